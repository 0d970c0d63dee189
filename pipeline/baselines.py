"""Classical denoisers beside the DAE: Gaussian, median, total variation, wavelet, non-local
means (scikit-image / SciPy), each with its parameter chosen on validation images only.

The lab's noise is clipped: a black pixel's noisy value averages 0.4/√(2π) ≈ 0.16, so a filter
that averages turns the background grey. Each method is shown as it is and with that clipping
bias undone: a filter's output estimates E[clip(x + n)], a known increasing function of x,
which `unclip` inverts.

Cost (benchmarks/baselines.py measures it): section 10 filters and scores tens of thousands
of images. Total variation and wavelet run here on a whole stack of images at once with
scikit-image's arithmetic, and the median takes SciPy's values by a faster route, so every
image comes out identical to the bit to the library's own call (the tests check it); the
Gaussian filter is SciPy's over the stack; non-local means stays scikit-image's, image by
image. Images go in chunks of `CHUNK` to a pool of `workers()` threads, which filter (the
filters release the GIL in their compiled loops) while the calling thread scores. Everything
measured is per image, so chunks and threads change no number. Non-local means, the slowest,
is scored on its first `test_images` test images, which each of its rows states.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy.special import ndtr  # the standard normal CDF

from pipeline import evaluate, noise

# Images per task: total variation ran ≈ 1.5× faster on 50 to 250 images at a time than on
# 1000 (its working arrays stay nearer the core), and 1000 validation images make ten tasks.
CHUNK = 100
AHEAD = 2  # chunks a thread may filter beyond the one being scored: bounds what waits in memory
T = TypeVar("T")


@dataclass(frozen=True)
class Method:
    name: str
    parameter: str
    grid: tuple[float, ...]
    apply: Callable[[np.ndarray, float], np.ndarray]  # (N, 28, 28, 1) -> (N, 28, 28, 1)
    # At most this many test images in `run` (the first ones; None: all of them).
    test_images: int | None = None


def _per_image(function):
    def apply(images: np.ndarray, value: float) -> np.ndarray:
        return np.stack([function(image[..., 0], value) for image in images])[..., np.newaxis]

    return apply


def _median(images: np.ndarray, size: float) -> np.ndarray:
    """SciPy's `median_filter(images, size=(1, size, size, 1))`, the same values (the middle
    of an odd count is one of the pixels; SciPy's "reflect" border is NumPy's "symmetric"),
    2-3× faster: every window of a chunk at once, then a partial sort of each."""
    size = int(size)
    middle, half = size * size // 2, size // 2
    padded = np.pad(images[..., 0], ((0, 0), (half, half), (half, half)), mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))
    windows = windows.reshape(*images.shape[:3], size * size)  # (N, 28, 28, size²), a copy
    return np.partition(windows, middle, axis=-1)[..., middle, np.newaxis]


def _tv(images: np.ndarray, weight: float) -> np.ndarray:
    """scikit-image's `denoise_tv_chambolle(image, weight=weight)` on every image of a stack at
    once: its Chambolle iterations, elementwise the same operations in the same order, each
    image stopped where scikit-image stops it (its energy changes by less than `eps` times the
    first) or after `max_num_iter`. (N, 28, 28, 1) -> (N, 28, 28, 1), the same bits."""
    eps, max_num_iter, tau = 2.0e-4, 200, 0.25  # scikit-image's defaults; tau = 1 / (2 · 2 axes)
    image = np.ascontiguousarray(images[..., 0])  # (N, 28, 28); float32 stays float32
    if image.dtype.kind != "f":
        image = image.astype(np.float64)
    result = np.empty_like(image)
    running = np.arange(len(image))  # which images still iterate
    pixels = float(image[0].size)
    p = np.zeros((2, *image.shape), image.dtype)  # the dual variable, (2, N, 28, 28)
    gradient = np.zeros_like(p)  # its last row (axis 0) and column (axis 1) stay 0
    divergence = np.zeros_like(image)  # minus the divergence of p; 0 at the first iteration
    square, norm = np.empty_like(image), np.empty_like(image)
    out = image
    for iteration in range(max_num_iter):
        if iteration > 0:
            np.add(p[0], p[1], out=divergence)
            np.negative(divergence, out=divergence)
            divergence[:, 1:, :] += p[0, :, :-1, :]
            divergence[:, :, 1:] += p[1, :, :, :-1]
            out = image + divergence
        # Energy per image, summed over its 784 pixels in the order scikit-image sums them.
        np.square(divergence, out=square)
        energy = square.reshape(len(image), -1).sum(axis=1)
        np.subtract(out[:, 1:, :], out[:, :-1, :], out=gradient[0, :, :-1, :])
        np.subtract(out[:, :, 1:], out[:, :, :-1], out=gradient[1, :, :, :-1])
        np.square(gradient[0], out=norm)
        np.square(gradient[1], out=square)
        norm += square
        np.sqrt(norm, out=norm)
        energy += weight * norm.reshape(len(image), -1).sum(axis=1)
        norm *= tau / weight
        norm += 1.0
        gradient *= tau
        p -= gradient
        p /= norm
        energy /= pixels
        if iteration == 0:
            initial = previous = energy
            continue
        done = np.abs(previous - energy) < eps * initial
        if iteration == max_num_iter - 1:
            done[:] = True
        if not done.any():
            previous = energy
            continue
        result[running[done]] = out[done]
        going = ~done
        if not going.any():
            break
        running, image, initial, previous = (
            running[going],
            image[going],
            initial[going],
            energy[going],
        )
        p, gradient = p[:, going], gradient[:, going]  # copies: C-contiguous again
        divergence, square, norm = (np.empty_like(image) for _ in range(3))
    return result[..., np.newaxis]


def _wavelet(images: np.ndarray, sigma: float) -> np.ndarray:
    """scikit-image's `denoise_wavelet(image, sigma=sigma, wavelet="db2", mode="soft",
    method="BayesShrink", rescale_sigma=False)` on every image of a stack at once: the same
    decomposition (scikit-image's depth, three levels less than the most, at least one), the
    same BayesShrink threshold per image and sub-band. (N, 28, 28, 1) -> (N, 28, 28, 1), the
    same bits."""
    import pywt

    stack = images[..., 0]  # (N, 28, 28)
    wavelet = pywt.Wavelet("db2")
    levels = max(pywt.dwtn_max_level(stack.shape[1:], wavelet) - 3, 1)
    approximation, *details = pywt.wavedecn(stack, wavelet, level=levels, axes=(1, 2))
    variance = sigma**2
    shrunk = [
        {key: _bayes_soft_threshold(band, variance) for key, band in level.items()}
        for level in details
    ]
    out = pywt.waverecn([approximation, *shrunk], wavelet, axes=(1, 2))
    return out[:, : stack.shape[1], : stack.shape[2], np.newaxis].astype(stack.dtype)


def _bayes_soft_threshold(band: np.ndarray, variance: float) -> np.ndarray:
    """Soft-threshold each image's sub-band (N, h, w) at its BayesShrink threshold,
    σ² / √max(mean(d²) − σ², eps), as scikit-image's `_bayes_thresh` computes it."""
    import pywt

    spread = (band * band).reshape(len(band), -1).mean(axis=1)  # (N,)
    floor = np.finfo(band.dtype).eps
    threshold = variance / np.sqrt(np.maximum(spread - variance, floor))
    return pywt.threshold(band, value=threshold[:, np.newaxis, np.newaxis], mode="soft")


def _nl_means(image, h):
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(image, h=h, patch_size=3, patch_distance=4, fast_mode=True)


METHODS = (
    Method("gaussian", "sigma", (0.5, 0.75, 1.0, 1.25, 1.5, 2.0), noise.gaussian_blur),
    Method("median", "size", (3, 5, 7), _median),
    Method("tv_chambolle", "weight", (0.05, 0.1, 0.15, 0.2, 0.3, 0.4), _tv),
    Method("wavelet", "sigma", (0.1, 0.2, 0.3, 0.4, 0.5), _wavelet),
    # ≈ 1.2 ms per image, one at a time, twice over the test set (each variant picks its own
    # h): scored on the first 2000 test images, whose PSNR is within 0.02 dB of all 10 000's
    # and whose SSIM within 0.001 (benchmarks/baselines.py).
    Method("nl_means", "h", (0.15, 0.25, 0.35, 0.45, 0.6), _per_image(_nl_means), 2000),
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


def variants(std: float | None) -> tuple[str, ...]:
    """Each method as it is and, when the Gaussian noise std is known, with `unclip`."""
    return ("as_is",) if std is None else ("as_is", "corrected")


# --- Chunks of images over a pool of threads ---


def workers() -> int:
    """Threads for the filters: a batch job's share of the cores where it set OMP_NUM_THREADS
    (pipeline.batch does), else every core this process may run on."""
    share = os.environ.get("OMP_NUM_THREADS", "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _in_chunks(
    task: Callable[[slice], T], count: int, threads: int | None
) -> Iterator[tuple[slice, T]]:
    """(chunk, task(chunk)) for each `CHUNK` of range(count), in order. With several threads a
    pool runs the tasks, at most `AHEAD` per thread beyond the chunk the caller is at, so that
    the caller's own work on each result (scoring it) runs beside the pool's."""
    chunks = [slice(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    threads = min(workers() if threads is None else threads, len(chunks))
    if threads <= 1:
        for chunk in chunks:
            yield chunk, task(chunk)
        return
    with ThreadPoolExecutor(threads) as pool:
        running = deque()
        for chunk in chunks:
            running.append((chunk, pool.submit(task, chunk)))
            if len(running) > AHEAD * threads:
                done, future = running.popleft()
                yield done, future.result()
        while running:
            done, future = running.popleft()
            yield done, future.result()


def _denoise_chunk(
    method: Method, noisy: np.ndarray, values: dict[str, float], std: float | None
) -> dict[str, tuple[np.ndarray, float]]:
    """`denoise` on one chunk, in this thread: {variant: (images, CPU seconds)}."""
    filtered, outputs = {}, {}
    for variant, value in values.items():
        if value not in filtered:
            started = time.thread_time()
            images = np.clip(method.apply(noisy, value), 0.0, 1.0)
            filtered[value] = (images, time.thread_time() - started)
        images, seconds = filtered[value]
        started = time.thread_time()
        denoised = unclip(images, std) if variant == "corrected" else images
        outputs[variant] = (denoised, seconds + time.thread_time() - started)
    return outputs


def denoise(
    method: Method,
    noisy: np.ndarray,
    values: dict[str, float],
    std: float | None,
    threads: int | None = None,
) -> dict[str, tuple[np.ndarray, float]]:
    """`method` on noisy images with each variant's parameter value ({variant: value}):
    {variant: (denoised images, seconds per image)}. The filter runs once per distinct value
    and its output is clipped to [0, 1], like the images; "corrected" then undoes the clipping
    bias with `unclip`. Seconds per image are CPU seconds of the thread that filtered it (so
    they do not depend on how many threads share the work)."""
    chunks = [
        found
        for _chunk, found in _in_chunks(
            lambda chunk: _denoise_chunk(method, noisy[chunk], values, std), len(noisy), threads
        )
    ]
    return {
        variant: (
            np.concatenate([found[variant][0] for found in chunks]),
            sum(found[variant][1] for found in chunks) / len(noisy),
        )
        for variant in values
    }


def choose(
    method: Method,
    val_clean: np.ndarray,
    val_noisy: np.ndarray,
    std: float | None,
    threads: int | None = None,
) -> dict[str, tuple[float, float]]:
    """The grid value with the lowest validation MSE for each of `variants(std)`:
    {variant: (value, validation MSE)}. Only validation images are seen here."""

    def per_image_mse(chunk: slice) -> dict[tuple[str, float], np.ndarray]:
        mse = {}
        for value in method.grid:
            outputs = _denoise_chunk(
                method, val_noisy[chunk], dict.fromkeys(variants(std), value), std
            )
            for variant, (denoised, _seconds) in outputs.items():
                mse[(variant, value)] = evaluate.per_image_mse(val_clean[chunk], denoised)
        return mse

    chunks = [found for _chunk, found in _in_chunks(per_image_mse, len(val_noisy), threads)]
    best = {}
    for value in method.grid:  # in grid order: a tie keeps the earlier value
        for variant in variants(std):
            score = float(np.concatenate([found[(variant, value)] for found in chunks]).mean())
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
    threads: int | None = None,
) -> list[Denoised]:
    """Choose the parameter of each variant on `val` = (clean, noisy) images, then denoise
    `noisy` with it; with `best_only`, only the variant of the lower validation MSE."""
    chosen = choose(method, *val, std, threads=threads)
    if best_only:
        variant = min(chosen, key=lambda name: chosen[name][1])
        chosen = {variant: chosen[variant]}
    values = {name: value for name, (value, _) in chosen.items()}
    outputs = denoise(method, noisy, values, std, threads=threads)
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
    threads: int | None = None,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every method, both variants: parameters from `val` = (clean, noisy), metrics on `test`.

    Returns one row per method and variant (MSE / PSNR / SSIM statistics, the parameter, the
    time per test image, how many test images: all of them, or a method's `test_images`) and
    the first `keep` denoised test images of each, for the figure. BM3D, when installed, runs
    on the first `bm3d_images` only. The test images are filtered and scored chunk by chunk,
    so no full copy of them is held for a method."""
    # (method, test images, validation images that choose its parameter)
    plan = [(method, _limit(method.test_images, len(test[0])), len(val[0])) for method in methods]
    if bm3d_available():
        plan.append((BM3D, min(bm3d_images, len(test[0])), min(50, len(val[0]))))
    rows, examples = [], {}
    for method, images, selection in plan:
        chosen = choose(method, val[0][:selection], val[1][:selection], std, threads=threads)
        values = {variant: value for variant, (value, _mse) in chosen.items()}
        scored = _score(method, (test[0][:images], test[1][:images]), values, std, keep, threads)
        for variant, value in values.items():
            seconds, scores, shown = scored[variant]
            rows.append(
                {
                    "method": method.name,
                    "variant": variant,
                    "parameter": method.parameter,
                    "value": float(value),
                    "seconds_per_image": seconds,
                    "images": images,
                    **scores,
                }
            )
            examples[f"{method.name}/{variant}"] = shown
    return rows, examples


def _score(
    method: Method,
    test: tuple[np.ndarray, np.ndarray],
    values: dict[str, float],
    std: float | None,
    keep: int,
    threads: int | None,
) -> dict[str, tuple[float, dict, np.ndarray]]:
    """`denoise` and `evaluate.scores` on `test` = (clean, noisy), chunk by chunk, keeping of
    the images only the first `keep`: {variant: (seconds per image, scores, kept images)}."""
    clean, noisy = test
    found = {variant: [] for variant in values}  # [(seconds, mse, ssim, kept images)] by chunk
    # The pool filters; this thread scores each chunk as it comes, while the pool filters the
    # next ones: scikit-image's SSIM holds the GIL, so threads that score only take turns.
    for chunk, outputs in _in_chunks(
        lambda chunk: _denoise_chunk(method, noisy[chunk], values, std), len(noisy), threads
    ):
        for variant, (denoised, seconds) in outputs.items():
            found[variant].append(
                (
                    seconds,
                    evaluate.per_image_mse(clean[chunk], denoised),  # (chunk,)
                    evaluate.ssim_per_image(clean[chunk], denoised),  # (chunk,)
                    denoised[: max(0, keep - chunk.start)],
                )
            )
    scored = {}
    for variant, parts in found.items():
        seconds, mse, ssim, shown = zip(*parts, strict=True)
        scores = evaluate.summarise_scores(np.concatenate(mse), np.concatenate(ssim))
        scored[variant] = (sum(seconds) / len(noisy), scores, np.concatenate(shown))
    return scored


def _limit(limit: int | None, count: int) -> int:
    return count if limit is None else min(limit, count)


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
