"""Denoising: Gwyddion's window network, a line-aware convolutional denoiser, training and writing."""

from afmwatch.denoise.model import Denoiser, default_denoiser_path, load_denoiser, save_denoiser
from afmwatch.denoise.write import write_denoised

__all__ = ["Denoiser", "default_denoiser_path", "load_denoiser", "save_denoiser", "write_denoised"]
