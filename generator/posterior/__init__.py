"""Posterior sampling: the diffusion model guided by a measurement likelihood (a powder pattern),
with diagnostics of the solutions it returns."""
