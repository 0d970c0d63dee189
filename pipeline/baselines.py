"""Classical denoisers beside the DAE: Gaussian, median, total variation, wavelet, non-local
means (scikit-image / SciPy), each with its parameter chosen on validation images only.

The lab's noise is clipped: a black pixel's noisy value averages 0.4/√(2π) ≈ 0.16, so a filter
that averages turns the background grey. Each method is shown as it is and with that clipping
bias undone: a filter's output estimates E[clip(x + n)], a known increasing function of x,
which `unclip` inverts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr  # the standard normal CDF

from pipeline import evaluate, noise


@dataclass(frozen=True)
class Method:
    name: str
    parameter: str
    grid: tuple[float, ...]
    apply: Callable[[np.ndarray, float], np.ndarray]  # (N, 28, 28, 1) -> (N, 28, 28, 1)


def _per_image(function):
    def apply(images: np.ndarray, value: float) -> np.ndarray:
        return np.stack([function(image[..., 0], value) for image in images])[..., np.newaxis]

    return apply


def _median(images, size):
    from scipy.ndimage import median_filter

    return median_filter(images, size=(1, int(size), int(size), 1))


def _tv(image, weight):
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(image, weight=weight)


def _wavelet(image, sigma):
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(
        image, sigma=sigma, wavelet="db2", mode="soft", method="BayesShrink", rescale_sigma=False
    )


def _nl_means(image, h):
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(image, h=h, patch_size=3, patch_distance=4, fast_mode=True)


METHODS = (
    Method("gaussian", "sigma", (0.5, 0.75, 1.0, 1.25, 1.5, 2.0), noise.gaussian_blur),
    Method("median", "size", (3, 5, 7), _median),
    Method("tv_chambolle", "weight", (0.05, 0.1, 0.15, 0.2, 0.3, 0.4), _per_image(_tv)),
    Method("wavelet", "sigma", (0.1, 0.2, 0.3, 0.4, 0.5), _per_image(_wavelet)),
    Method("nl_means", "h", (0.15, 0.25, 0.35, 0.45, 0.6), _per_image(_nl_means)),
)


def clipped_mean(x: np.ndarray, std: float) -> np.ndarray:
    """E[clip(x + n, 0, 1)] for n ~ N(0, std²): what averaging clipped noisy pixels returns."""
    x = np.asarray(x, dtype=np.float64)
    a, b = (0.0 - x) / std, (1.0 - x) / std
    density = lambda z: np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)  # noqa: E731
    return x * (ndtr(b) - ndtr(a)) + std * (density(a) - density(b)) + (1.0 - ndtr(b))


def unclip(filtered: np.ndarray, std: float) -> np.ndarray:
    """Invert `clipped_mean`: from a filter's output back to the clean intensity."""
    grid = np.linspace(0.0, 1.0, 2001)
    expected = clipped_mean(grid, std)  # increasing from ≈ 0.16 to ≈ 0.84 at std 0.4
    return np.interp(filtered, expected, grid).astype(np.float32)


def _score(clean, denoised) -> float:
    return float(evaluate.per_image_mse(clean, denoised).mean())


def variants(std: float | None) -> tuple[str, ...]:
    """Each method as it is and, when the Gaussian noise std is known, with `unclip`."""
    return ("as_is",) if std is None else ("as_is", "corrected")


def denoise(
    method: Method, noisy: np.ndarray, values: dict[str, float], std: float | None
) -> dict[str, tuple[np.ndarray, float]]:
    """`method` on noisy images with each variant's parameter value ({variant: value}):
    {variant: (denoised images, seconds per image)}. The filter runs once per distinct value
    and its output is clipped to [0, 1], like the images; "corrected" then undoes the clipping
    bias with `unclip`."""
    filtered, outputs = {}, {}
    for variant, value in values.items():
        if value not in filtered:
            started = time.perf_counter()
            images = np.clip(method.apply(noisy, value), 0.0, 1.0)
            filtered[value] = (images, (time.perf_counter() - started) / len(noisy))
        images, seconds = filtered[value]
        started = time.perf_counter()
        denoised = unclip(images, std) if variant == "corrected" else images
        outputs[variant] = (denoised, seconds + (time.perf_counter() - started) / len(noisy))
    return outputs


def choose(
    method: Method, val_clean: np.ndarray, val_noisy: np.ndarray, std: float | None
) -> dict[str, tuple[float, float]]:
    """The grid value with the lowest validation MSE for each of `variants(std)`:
    {variant: (value, validation MSE)}. Only validation images are seen here."""
    best = {}
    for value in method.grid:
        outputs = denoise(method, val_noisy, dict.fromkeys(variants(std), value), std)
        for variant, (denoised, _seconds) in outputs.items():
            score = _score(val_clean, denoised)
            if variant not in best or score < best[variant][1]:
                best[variant] = (value, score)
    return best


@dataclass(frozen=True)
class Denoised:
    """One variant of a method, its parameter chosen on validation images, on noisy images."""

    variant: str  # "as_is" or "corrected" (see `variants`)
    value: float  # the parameter's value
    validation_mse: float
    images: np.ndarray  # (N, 28, 28, 1)
    seconds_per_image: float


def choose_and_denoise(
    method: Method,
    val: tuple[np.ndarray, np.ndarray],
    noisy: np.ndarray,
    std: float | None,
    best_only: bool = False,
) -> list[Denoised]:
    """Choose the parameter of each variant on `val` = (clean, noisy) images, then denoise
    `noisy` with it; with `best_only`, only the variant of the lower validation MSE."""
    chosen = choose(method, *val, std)
    if best_only:
        variant = min(chosen, key=lambda name: chosen[name][1])
        chosen = {variant: chosen[variant]}
    outputs = denoise(method, noisy, {name: value for name, (value, _) in chosen.items()}, std)
    return [
        Denoised(variant, value, validation_mse, *outputs[variant])
        for variant, (value, validation_mse) in chosen.items()
    ]


def _bm3d(image, sigma):
    import bm3d

    return bm3d.bm3d(image, sigma_psd=sigma)


# Optional: only where the `bm3d` package is installed, and on a stated subset (≈ 0.3 s/image).
BM3D = Method("bm3d", "sigma", (0.3, 0.4, 0.5), _per_image(_bm3d))


def run(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    std: float | None,
    methods=METHODS,
    keep: int = 6,
    bm3d_images: int = 200,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every method, both variants: parameters from `val` = (clean, noisy), metrics on `test`.

    Returns one row per method and variant (MSE / PSNR / SSIM statistics, the parameter, the
    time per test image, how many test images) and the first `keep` denoised test images of
    each, for the figure. BM3D, when installed, runs on the first `bm3d_images` only."""
    # (method, test images, validation images that choose its parameter)
    plan = [(method, len(test[0]), len(val[0])) for method in methods]
    if bm3d_available():
        plan.append((BM3D, min(bm3d_images, len(test[0])), min(50, len(val[0]))))
    rows, examples = [], {}
    for method, images, selection in plan:
        test_clean, test_noisy = test[0][:images], test[1][:images]
        val_subset = (val[0][:selection], val[1][:selection])
        for result in choose_and_denoise(method, val_subset, test_noisy, std):
            rows.append(
                {
                    "method": method.name,
                    "variant": result.variant,
                    "parameter": method.parameter,
                    "value": float(result.value),
                    "seconds_per_image": result.seconds_per_image,
                    "images": images,
                    **evaluate.scores(test_clean, result.images),
                }
            )
            examples[f"{method.name}/{result.variant}"] = result.images[:keep]
    return rows, examples


def best(rows: list[dict]) -> dict:
    """The classical row with the highest PSNR of the mean MSE."""
    return max(rows, key=lambda row: row["psnr_of_mean_mse"])


def bm3d_available() -> bool:
    """Whether the optional `bm3d` package imports (it is licensed for non-commercial use
    only, so it is never a dependency; the report says why it is missing)."""
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def method(name: str) -> Method:
    """The classical method called `name` (one of METHODS)."""
    return next(candidate for candidate in METHODS if candidate.name == name)
