"""Numbers about the data and the model's reconstructions, as plain dicts and arrays.

Everything here is pure: arrays in, arrays or dicts out. `metrics.json` is built from these
dicts, and the report and the notebook read that one file.
"""

from __future__ import annotations

import numpy as np

from pipeline.data import CLASS_NAMES


def summarise(values: np.ndarray) -> dict[str, float]:
    """min / max / mean / median / std of a 1-D array, as floats."""
    values = np.asarray(values, dtype=np.float64)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "std": float(values.std()),
    }


def per_image_mse(clean: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 1) × 2 -> (N,) mean squared error of each image (lab §8), in float64."""
    difference = clean.astype(np.float64) - reconstructed.astype(np.float64)
    return np.mean(np.square(difference).reshape(len(clean), -1), axis=1)


def psnr(mse: np.ndarray | float, data_range: float = 1.0) -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB for pixels in [0, data_range]."""
    return 10.0 * np.log10(data_range**2 / np.asarray(mse, dtype=np.float64))


def class_counts(labels: np.ndarray) -> list[dict]:
    """Lab §1.3: images per class, in class order."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    return [
        {"label": label, "name": name, "count": int(counts[label])}
        for label, name in enumerate(CLASS_NAMES)
    ]


def value_range(images: np.ndarray) -> dict[str, float]:
    """Lab §2 and §3 print min and max; mean and std describe the intensity distribution."""
    return {
        "min": float(images.min()),
        "max": float(images.max()),
        "mean": float(images.mean(dtype=np.float64)),
        "std": float(images.std(dtype=np.float64)),
    }


def reconstruction(mse: np.ndarray, noisy_mse: np.ndarray) -> dict:
    """Lab §8 from per-image MSE (see `per_image_mse`) of the denoised and the noisy test images:
    statistics and PSNR of both, so the report can say how much the model removed."""
    return {
        "images": int(len(mse)),
        "mse": summarise(mse),
        "psnr": summarise(psnr(mse)),
        # PSNR of the mean MSE: the figure usually quoted for a whole test set.
        "psnr_of_mean_mse": float(psnr(mse.mean())),
        "first_mse": [float(v) for v in mse[:10]],
        "noisy_input": {"mse": summarise(noisy_mse), "psnr": summarise(psnr(noisy_mse))},
    }
