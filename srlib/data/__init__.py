"""Data: MATLAB-exact resizing, image IO, datasets, download and preparation."""
