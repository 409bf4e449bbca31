"""Denoising: Gwyddion's window network, a line-aware convolutional denoiser, training and writing.

Import the parts (`afmwatch.denoise.model`, `.write`, `.train`, `.options`) directly: this package
imports nothing itself, so the command line can read the training options without loading torch.
"""
