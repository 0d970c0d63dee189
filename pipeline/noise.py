"""Lab §3: Gaussian noise, clipped to [0, 1]."""

from __future__ import annotations

import numpy as np


def add_gaussian_noise(
    images: np.ndarray, mean: float, std: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """images + N(mean, std²) per pixel, clipped to [0, 1], as a new float32 array. `std` may
    be an array that broadcasts against the images, e.g. one std per image (N, 1, 1, 1).

    The lab draws float64 noise and so holds a float64 copy of all 60 000 images; drawing in
    float32 into the output buffer keeps one array of the input's size and dtype.
    """
    noisy = rng.standard_normal(size=images.shape, dtype=np.float32)  # (N, 28, 28, 1)
    noisy *= std
    noisy += mean
    noisy += images
    np.clip(noisy, 0.0, 1.0, out=noisy)
    return noisy


# --- Other degradations, for the generalisation study (lab §9: Poisson, speckle, blur) ---


def add_poisson_noise(images: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: each pixel becomes Poisson(peak · x) / peak (fewer photons, more noise)."""
    counts = rng.poisson(images.astype(np.float64) * peak)
    return np.clip(counts / peak, 0.0, 1.0).astype(np.float32)


def add_speckle_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise: x · (1 + N(0, std²)), clipped; dark pixels stay dark."""
    factor = rng.standard_normal(size=images.shape, dtype=np.float32)
    factor *= std
    factor += 1.0
    return np.clip(images * factor, 0.0, 1.0)


def add_salt_pepper_noise(
    images: np.ndarray, amount: float, rng: np.random.Generator
) -> np.ndarray:
    """A share `amount` of the pixels set to 0 or 1, half each."""
    noisy = images.astype(np.float32, copy=True)
    hit = rng.random(size=images.shape) < amount
    noisy[hit] = (rng.random(size=int(hit.sum())) < 0.5).astype(np.float32)
    return noisy


def gaussian_blur(
    images: np.ndarray, sigma: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Blur each image with a Gaussian of `sigma` pixels (no noise; `rng` is unused)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(images, sigma=(0, sigma, sigma, 0)).astype(np.float32)


def gaussian(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return add_gaussian_noise(images, 0.0, std, rng)


# name -> (function, parameter name); the generalisation study names its conditions by these.
DEGRADATIONS = {
    "gaussian": (gaussian, "std"),
    "poisson": (add_poisson_noise, "peak"),
    "speckle": (add_speckle_noise, "std"),
    "salt_pepper": (add_salt_pepper_noise, "amount"),
    "blur": (gaussian_blur, "sigma"),
}


def degrade(images: np.ndarray, kind: str, value: float, rng: np.random.Generator) -> np.ndarray:
    function, parameter = DEGRADATIONS[kind]
    return function(images, **{parameter: value}, rng=rng)


def add_gaussian_noise_range(
    images: np.ndarray, mean: float, low: float, high: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise whose std is drawn per image, uniformly in [low, high] (training on
    randomised noise levels), clipped to [0, 1]."""
    stds = rng.uniform(low, high, size=(len(images),) + (1,) * (images.ndim - 1)).astype(np.float32)
    return add_gaussian_noise(images, mean, stds, rng)


def corrupt(
    images: np.ndarray, settings, rng: np.random.Generator, training: bool = False
) -> np.ndarray:
    """The config's noise (`config.NoiseConfig`) on `images`. With `training` and a
    `std_range`, Gaussian noise takes a random std per image; test noise keeps `std`."""
    if settings.type == "gaussian":
        if training and settings.std_range:
            return add_gaussian_noise_range(images, settings.mean, *settings.std_range, rng)
        return add_gaussian_noise(images, settings.mean, settings.std, rng)
    if settings.type == "speckle":
        return add_speckle_noise(images, settings.std, rng)
    if settings.type == "poisson":
        return add_poisson_noise(images, settings.peak, rng)
    return add_salt_pepper_noise(images, settings.amount, rng)
