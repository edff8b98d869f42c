"""Consistency distillation of the diffusion model: the few-step student, its checkpoints, sampler
and training."""
