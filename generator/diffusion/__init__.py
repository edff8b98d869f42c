"""The trained periodic diffusion model: denoiser, noise schedules, samplers, training and
checkpoints; :class:`~crystaloop.generator.diffusion.generator.DiffusionGenerator` puts it behind the
Generator port."""
