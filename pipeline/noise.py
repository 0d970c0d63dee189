"""Lab §3: Gaussian noise, clipped to [0, 1]."""

from __future__ import annotations

import numpy as np


def add_gaussian_noise(
    images: np.ndarray, mean: float, std: float, rng: np.random.Generator
) -> np.ndarray:
    """images + N(mean, std²) per pixel, clipped to [0, 1], as a new float32 array.

    The lab draws float64 noise and so holds a float64 copy of all 60 000 images; drawing in
    float32 into the output buffer keeps one array of the input's size and dtype.
    """
    noisy = rng.standard_normal(size=images.shape, dtype=np.float32)  # (N, 28, 28, 1)
    noisy *= std
    noisy += mean
    noisy += images
    np.clip(noisy, 0.0, 1.0, out=noisy)
    return noisy
