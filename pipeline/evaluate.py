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


def per_image_mse(clean: np.ndarray, reconstructed: np.ndarray, chunk: int = 1000) -> np.ndarray:
    """(N, 28, 28, 1) × 2 -> (N,) mean squared error of each image (lab §8), in float64,
    converted 1000 images at a time: each image's mean is the same, the float64 copies small."""
    mse = np.empty(len(clean))
    for start in range(0, len(clean), chunk):
        part = slice(start, start + chunk)
        difference = clean[part].astype(np.float64) - reconstructed[part].astype(np.float64)
        mse[part] = np.mean(np.square(difference).reshape(len(difference), -1), axis=1)
    return mse


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
    effect = noise_effect(images, images)  # the same chunked float64 sums, without copies
    return {
        "min": float(images.min()),
        "max": float(images.max()),
        "mean": effect["clean"]["mean"],
        "std": effect["clean"]["std"],
    }


def psnr_of_mean_mse(mse: np.ndarray) -> float:
    """PSNR of the mean of per-image MSEs: the figure usually quoted for a set of images (the
    mean of per-image PSNRs is higher, as PSNR is a concave function of MSE)."""
    return float(psnr(np.mean(mse)))


def scores(clean: np.ndarray, denoised: np.ndarray) -> dict:
    """MSE, PSNR and SSIM of denoised (or noisy) images against the clean ones: statistics of
    each over the images, and the PSNR of the mean MSE."""
    return summarise_scores(per_image_mse(clean, denoised), ssim_per_image(clean, denoised))


def summarise_scores(mse: np.ndarray, ssim: np.ndarray) -> dict:
    """`scores` from per-image MSE and SSIM already computed, (N,) each."""
    return {
        "mse": summarise(mse),
        "psnr": summarise(psnr(mse)),
        "psnr_of_mean_mse": psnr_of_mean_mse(mse),
        "ssim": summarise(ssim),
    }


def reconstruction(mse: np.ndarray, ssim: np.ndarray, noisy_input: dict) -> dict:
    """Lab §8: the scores of the model's denoised test images from their per-image MSE and
    SSIM, the first ten MSEs (the lab prints them), and the noisy input's `scores`, so the
    report can say how much the model removed."""
    return {
        "images": int(len(mse)),
        **summarise_scores(mse, ssim),
        "first_mse": [float(value) for value in mse[:10]],
        "noisy_input": noisy_input,
    }


# --- The lab's reflection questions (§3, §6, §7, §8), answered from this run's arrays ---


def noise_effect(clean: np.ndarray, noisy: np.ndarray, chunk: int = 4096) -> dict:
    """Lab §3 reflection: how the noise widens the intensity distribution.

    SNR is the power ratio of the clean signal to the noise actually added after clipping:
    10·log10(Σ clean² / Σ (noisy − clean)²). Sums run in float64 over chunks of images, so
    60 000 images need no float64 copy (1.1 GB)."""
    totals = np.zeros(7)  # Σx, Σx², Σy, Σy², Σ(y-x), Σ(y-x)², count of pixels
    zeros = ones = black = 0
    for start in range(0, len(clean), chunk):
        x = clean[start : start + chunk].astype(np.float64)
        y = noisy[start : start + chunk].astype(np.float64)
        added = y - x
        totals += [
            x.sum(),
            np.square(x).sum(),
            y.sum(),
            np.square(y).sum(),
            added.sum(),
            np.square(added).sum(),
            x.size,
        ]
        zeros += int(np.count_nonzero(y == 0.0))
        ones += int(np.count_nonzero(y == 1.0))
        black += int(np.count_nonzero(x == 0.0))
    n = totals[6]

    def moments(total, total_squares):
        mean = total / n
        return mean, float(np.sqrt(max(total_squares / n - mean**2, 0.0)))

    clean_mean, clean_std = moments(totals[0], totals[1])
    noisy_mean, noisy_std = moments(totals[2], totals[3])
    added_mean, added_std = moments(totals[4], totals[5])
    return {
        "clean": {"mean": float(clean_mean), "std": clean_std},
        "noisy": {"mean": float(noisy_mean), "std": noisy_std},
        "clipped_low": zeros / n,
        "clipped_high": ones / n,
        "clean_black": black / n,
        "added_mean": float(added_mean),
        "added_std": added_std,
        "snr_db": float(10.0 * np.log10(totals[1] / totals[5])) if totals[5] else float("inf"),
    }


# Relative rise of val_loss above its minimum that counts as overfitting, not noise.
OVERFIT_TOLERANCE = 0.005


def overfitting(loss: list[float], val_loss: list[float]) -> dict:
    """Lab §6 note: did val_loss rise while loss fell? Epochs are numbered from 1."""
    val = np.asarray(val_loss, dtype=np.float64)
    train_losses = np.asarray(loss, dtype=np.float64)
    best = int(np.argmin(val))
    rise = float(val[-1] - val[best])
    train_fell_after_best = (
        bool(train_losses[-1] < train_losses[best]) if best < len(val) - 1 else False
    )
    overfit = rise > OVERFIT_TOLERANCE * val[best] and train_fell_after_best
    return {
        "best_epoch": best + 1,
        "best_val_loss": float(val[best]),
        "final_val_loss": float(val[-1]),
        "final_loss": float(train_losses[-1]),
        "rise_after_best": rise,
        "rise_relative": rise / float(val[best]),
        "final_gap": float(val[-1] - train_losses[-1]),  # negative: validation below training
        "still_improving": best == len(val) - 1,
        "overfit": bool(overfit),
        "tolerance": OVERFIT_TOLERANCE,
    }


SSIM_WINDOW = 7


def ssim_per_image(clean: np.ndarray, reconstructed: np.ndarray, chunk: int = 500) -> np.ndarray:
    """(N, 28, 28, 1) × 2 -> (N,) structural similarity: scikit-image's `structural_similarity`
    (7×7 uniform window, sample covariance, data range 1), computed on a stack of images at once.

    scikit-image filters one image per call; the same uniform filter over (1, 7, 7) filters a
    whole chunk in one call, three times faster, with the same values (tests hold them to
    scikit-image's). Chunks of 500 keep the float64 temporaries near 25 MB."""
    from scipy.ndimage import uniform_filter

    size, pad = (1, SSIM_WINDOW, SSIM_WINDOW), (SSIM_WINDOW - 1) // 2
    cov_norm = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    c1, c2 = 0.01**2, 0.03**2  # (K1 · data range)², (K2 · data range)²
    scores = np.empty(len(clean))
    for start in range(0, len(clean), chunk):
        x = clean[start : start + chunk, ..., 0].astype(np.float64)
        y = reconstructed[start : start + chunk, ..., 0].astype(np.float64)
        ux, uy = uniform_filter(x, size), uniform_filter(y, size)
        vx = cov_norm * (uniform_filter(x * x, size) - ux * ux)
        vy = cov_norm * (uniform_filter(y * y, size) - uy * uy)
        vxy = cov_norm * (uniform_filter(x * y, size) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        inner = s[:, pad:-pad, pad:-pad]
        scores[start : start + len(x)] = [image.mean(dtype=np.float64) for image in inner]
    return scores


SOBEL_CHUNK = 1000  # images per call: three float64 working copies of 6 MB each


def gradient_magnitude(images: np.ndarray, chunk: int = SOBEL_CHUNK) -> np.ndarray:
    """(N, 28, 28, 1) -> (N, 28, 28) Sobel gradient magnitude of each image, in float64:
    scikit-image's `sobel` (its two 3×3 kernels, "reflect" border, sqrt of the mean square),
    computed on a chunk of images at once with the same kernels over (1, 3, 3), so the values
    are the same to the bit (a test holds them) at a fraction of the per-image calls' cost."""
    from scipy import ndimage
    from skimage.filters.edges import SOBEL_EDGE, SOBEL_SMOOTH

    kernels = [  # scikit-image's, built as it builds them: edge weights along one axis
        (SOBEL_EDGE.reshape(-1, 1) * SOBEL_SMOOTH.reshape(1, -1))[np.newaxis],
        (SOBEL_SMOOTH.reshape(-1, 1) * SOBEL_EDGE.reshape(1, -1))[np.newaxis],
    ]
    magnitude = np.empty(images.shape[:3])
    for start in range(0, len(images), chunk):
        stack = images[start : start + chunk, ..., 0].astype(np.float64)
        total = np.zeros_like(stack)
        for kernel in kernels:
            along = ndimage.convolve(stack, kernel, mode="reflect")
            along *= along
            total += along
        magnitude[start : start + chunk] = np.sqrt(total) / np.sqrt(2, dtype=np.float64)
    return magnitude


def gradient_energy(images: np.ndarray, chunk: int = SOBEL_CHUNK) -> np.ndarray:
    """(N, 28, 28, 1) -> (N,) mean Sobel gradient magnitude: how much edge an image has."""
    energy = np.empty(len(images))
    for start in range(0, len(images), chunk):
        magnitude = gradient_magnitude(images[start : start + chunk], chunk)
        energy[start : start + chunk] = [image.mean() for image in magnitude]
    return energy


# A denoised image with less than this share of the clean image's edge energy looks blurred.
BLUR_THRESHOLD = 0.9


def per_class(
    labels: np.ndarray,
    mse: np.ndarray,
    ssim: np.ndarray,
    edges_clean: np.ndarray,
    edges_denoised: np.ndarray,
) -> list[dict]:
    """Lab §7: MSE, PSNR, SSIM and sharpness by class. Sharpness is the denoised images' edge
    energy over the clean images' (see `gradient_energy`): 1 keeps every edge, < 1 blurs."""
    rows = []
    for label, name in enumerate(CLASS_NAMES):
        chosen = labels == label
        if not chosen.any():
            continue
        rows.append(
            {
                "label": label,
                "name": name,
                "images": int(chosen.sum()),
                "mse": float(mse[chosen].mean()),
                "psnr": psnr_of_mean_mse(mse[chosen]),
                "ssim": float(ssim[chosen].mean()),
                "sharpness": float(edges_denoised[chosen].sum() / edges_clean[chosen].sum()),
            }
        )
    return rows


def extremes(mse: np.ndarray, labels: np.ndarray, count: int = 8) -> dict:
    """Indices, classes and MSE of the best and worst reconstructed images."""
    order = np.argsort(mse, kind="stable")
    return {
        "best": _image_rows(order[:count], labels, mse),
        "worst": _image_rows(order[::-1][:count], labels, mse),
    }


def _image_rows(indices: np.ndarray, labels: np.ndarray, mse: np.ndarray) -> list[dict]:
    """Index, class and MSE of each test image in `indices`, for the report's tables."""
    return [
        {
            "index": int(index),
            "label": int(labels[index]),
            "name": CLASS_NAMES[labels[index]],
            "mse": float(mse[index]),
        }
        for index in indices
    ]


def residuals(
    clean: np.ndarray, reconstructed: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Lab §7 "¿Qué tipo de ruido persiste?": the residual (denoised − clean).

    Returns the mean residual map of each class, (10, 28, 28), and the residual's statistics:
    its bias, spread, and how structured it is. White noise has neighbour correlation ≈ 0; a
    residual that follows the garment's shapes (blur, missing detail) has a high one."""
    edges = gradient_mask(clean)  # first, so that its float64 magnitudes are gone before these
    residual = reconstructed[..., 0].astype(np.float64)  # (N, 28, 28)
    residual -= clean[..., 0]
    maps = np.stack(
        [
            residual[labels == label].mean(axis=0)
            if (labels == label).any()
            else np.zeros(residual.shape[1:])
            for label in range(len(CLASS_NAMES))
        ]
    )
    stats = {
        "mean": float(residual.mean()),
        "std": float(residual.std()),
        "neighbour_correlation": _neighbour_correlation(residual),
        "background_mean": float(residual[clean[..., 0] == 0].mean()),
    }
    np.abs(residual, out=residual)  # from here on only its size matters
    stats |= {
        "mean_abs": float(residual.mean()),
        "share_above_0_1": float(np.mean(residual > 0.1)),
        "edge_mean_abs": float(residual[edges].mean()),
        "flat_mean_abs": float(residual[~edges].mean()),
    }
    return maps, stats


def gradient_mask(images: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """(N, 28, 28, 1) -> (N, 28, 28) True where the clean image has its strongest edges."""
    magnitude = gradient_magnitude(images)
    return magnitude > np.quantile(magnitude, quantile)


def _neighbour_correlation(residual: np.ndarray, chunk: int = 1000) -> float:
    """Pearson correlation between horizontally adjacent residual pixels, over all images, from
    sums gathered 1000 images at a time (np.corrcoef would copy every pair at once)."""
    sums = np.zeros(5)  # Σl, Σr, Σl², Σr², Σlr over the left and right pixel of every pair
    for start in range(0, len(residual), chunk):
        left = residual[start : start + chunk, :, :-1]
        right = residual[start : start + chunk, :, 1:]
        sums += [
            left.sum(),
            right.sum(),
            (left * left).sum(),
            (right * right).sum(),
            (left * right).sum(),
        ]
    n = residual[:, :, 1:].size
    left, right, left2, right2, cross = sums
    covariance = cross - left * right / n
    return float(covariance / np.sqrt((left2 - left**2 / n) * (right2 - right**2 / n)))


# Anomalous images the report's anomalies figure draws and its caption names: the worst ten,
# enough to show which garments they are without a second page of thumbnails.
ANOMALIES_SHOWN = 10


def anomalies(
    val_mse: np.ndarray,
    test_mse: np.ndarray,
    test_labels: np.ndarray,
    test_edges: np.ndarray,
    quantile: float = 0.99,
) -> dict:
    """Lab §8 note: a threshold on per-image MSE from the validation errors (not test), the
    test images above it, how their classes compare with the test set's, and how much edge
    energy (`gradient_energy` of the clean images) they have compared with the rest."""
    threshold = float(np.quantile(val_mse, quantile))
    above = np.flatnonzero(test_mse > threshold)
    above = above[np.argsort(test_mse[above])[::-1]]
    counts = np.bincount(test_labels[above], minlength=len(CLASS_NAMES))
    totals = np.bincount(test_labels, minlength=len(CLASS_NAMES))
    return {
        "quantile": quantile,
        "threshold": threshold,
        "count": int(len(above)),
        "share": float(len(above) / len(test_mse)),
        "edge_ratio": float(test_edges[above].mean() / test_edges.mean()) if len(above) else None,
        "images": _image_rows(above, test_labels, test_mse),
        "by_class": [
            {
                "label": label,
                "name": name,
                "count": int(counts[label]),
                "share_of_class": float(counts[label] / totals[label]) if totals[label] else 0.0,
            }
            for label, name in enumerate(CLASS_NAMES)
        ],
    }
