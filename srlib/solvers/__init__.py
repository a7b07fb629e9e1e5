"""Solvers: the training loops (standard pixel/perceptual and GAN)."""
