"""srlib: single-image super-resolution (x4) for teaching and reproduction."""

__version__ = "0.1.0"
