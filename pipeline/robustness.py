"""Lab §9 "Generalización": the trained model on noise it was not trained for.

Each condition degrades the same clean images (a stated subset of the test set) with a seeded
generator; the model and the best classical baseline (its parameter re-chosen on validation
images for each condition) denoise them; PSNR and SSIM say how each copes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline import baselines, evaluate, noise

# (kind, parameter value): Gaussian std from 0.1 to 0.7, then the other degradations.
CONDITIONS = (
    *(("gaussian", std) for std in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
    ("poisson", 10.0),  # photon peak: Poisson(10·x)/10
    ("speckle", 0.5),  # x·(1 + N(0, 0.5²))
    ("salt_pepper", 0.1),  # 10 % of the pixels set to 0 or 1
    ("blur", 1.0),  # Gaussian blur, sigma 1 pixel, no noise
)

# Validation images that re-choose the baseline's parameter for each condition (the first
# ones). On Fashion-MNIST each disjoint block of 300 of the first 1000 chose what all 1000
# chose, for every condition and every method but wavelet at std 0.7, whose values 0.4 and
# 0.5 tie to five digits (benchmarks/baselines.py); eleven choices on 1000 images each were
# the study's largest cost.
SELECTION_IMAGES = 300


def study(
    predict: Callable[[np.ndarray], np.ndarray],
    val_clean: np.ndarray,
    test_clean: np.ndarray,
    method: baselines.Method,
    seed: int,
    conditions=CONDITIONS,
    selection_images: int = SELECTION_IMAGES,
    threads: int | None = None,
) -> list[dict]:
    """One row per condition: PSNR/SSIM of the degraded input, the model and the baseline
    (its parameter chosen on the first `selection_images` of `val_clean`, stated in the row)."""
    rows = []
    for index, (kind, value) in enumerate(conditions):
        rng = np.random.default_rng([seed, index])  # each condition its own, repeatable noise
        # All of `val_clean` is degraded, so that the test noise after it in the generator's
        # stream does not depend on how many of them choose.
        val_noisy = noise.degrade(val_clean, kind, value, rng)
        test_noisy = noise.degrade(test_clean, kind, value, rng)
        std = value if kind == "gaussian" else None  # unclipping needs the Gaussian std
        val = (val_clean[:selection_images], val_noisy[:selection_images])
        (classical,) = baselines.choose_and_denoise(
            method, val, test_noisy, std, best_only=True, threads=threads
        )
        rows.append(
            {
                "kind": kind,
                "value": value,
                "input": _short(evaluate.scores(test_clean, test_noisy)),
                "model": _short(evaluate.scores(test_clean, predict(test_noisy))),
                "baseline": {
                    **_short(evaluate.scores(test_clean, classical.images)),
                    "method": method.name,
                    "variant": classical.variant,
                    "parameter": float(classical.value),
                    "selection_images": len(val[0]),
                },
            }
        )
    return rows


def _short(scores: dict) -> dict:
    """A row's two numbers from `evaluate.scores`: PSNR of the mean MSE and the mean SSIM."""
    return {"psnr": scores["psnr_of_mean_mse"], "ssim": scores["ssim"]["mean"]}
