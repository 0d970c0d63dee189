import os
import sys
import types

import numpy as np
import pytest

from pipeline import baselines, data, evaluate, noise
from tests.conftest import SUBSET_DIR


@pytest.fixture(scope="module")
def images():
    dataset = data.load(SUBSET_DIR)
    rng = np.random.default_rng(0)
    val_clean = data.to_unit_float(dataset.train_images[:60])
    test_clean = data.to_unit_float(dataset.test_images[:40])
    val = (val_clean, noise.add_gaussian_noise(val_clean, 0.0, 0.4, rng))
    test = (test_clean, noise.add_gaussian_noise(test_clean, 0.0, 0.4, rng))
    return val, test


@pytest.mark.parametrize("x", [0.0, 0.3, 1.0])
def test_clipped_mean_matches_simulation(x):
    rng = np.random.default_rng(1)
    simulated = np.clip(x + rng.normal(0, 0.4, 400_000), 0, 1).mean()
    assert baselines.clipped_mean(x, 0.4) == pytest.approx(simulated, abs=0.002)


def test_black_pixels_average_0_16_and_unclip_undoes_it():
    # 0.4/√(2π) ≈ 0.1596, less the little mass clipped at 1 as well.
    assert baselines.clipped_mean(0.0, 0.4) == pytest.approx(0.1588, abs=1e-4)
    x = np.linspace(0, 1, 11)
    np.testing.assert_allclose(baselines.unclip(baselines.clipped_mean(x, 0.4), 0.4), x, atol=1e-3)


def test_the_gaussian_filter_is_the_generalisation_study_s_blur(images):
    _, (_, noisy) = images
    gaussian = baselines.method("gaussian")
    assert gaussian.apply is noise.gaussian_blur
    blurred = gaussian.apply(noisy, 1.0)
    assert blurred.dtype == np.float32 and blurred.shape == noisy.shape


def test_choose_and_denoise_gives_each_variant_its_validation_choice(images):
    val, (_, noisy) = images
    tv = baselines.method("tv_chambolle")
    chosen = baselines.choose(tv, *val, 0.4)
    results = baselines.choose_and_denoise(tv, val, noisy, 0.4)
    assert [result.variant for result in results] == ["as_is", "corrected"]
    for result in results:
        assert (result.value, result.validation_mse) == chosen[result.variant]
        filtered = np.clip(tv.apply(noisy, result.value), 0.0, 1.0)
        expected = baselines.unclip(filtered, 0.4) if result.variant == "corrected" else filtered
        np.testing.assert_array_equal(result.images, expected)
        assert result.seconds_per_image > 0
    (best,) = baselines.choose_and_denoise(tv, val, noisy, 0.4, best_only=True)
    assert best.variant == min(chosen, key=lambda variant: chosen[variant][1])
    (only,) = baselines.choose_and_denoise(tv, val, noisy, None)  # no std: nothing to unclip
    assert only.variant == "as_is" and only.value == chosen["as_is"][0]


def test_parameters_are_chosen_on_validation_only(images):
    """Changing the test images (clean or noisy) never changes a chosen parameter."""
    val, test = images
    rows, _ = baselines.run(val, test, 0.4)
    rng = np.random.default_rng(5)
    other_test = (
        rng.random(test[0].shape, dtype=np.float32),
        rng.random(test[1].shape, dtype=np.float32),
    )
    other_rows, _ = baselines.run(val, other_test, 0.4)
    chosen = {(row["method"], row["variant"]): row["value"] for row in rows}
    assert chosen == {(row["method"], row["variant"]): row["value"] for row in other_rows}
    # …while other validation images can change them: the choice does depend on validation.
    flat_val = (
        np.full_like(val[0], 0.5),
        noise.add_gaussian_noise(np.full_like(val[0], 0.5), 0, 0.4, rng),
    )
    changed, _ = baselines.run(flat_val, test, 0.4)
    assert chosen != {(row["method"], row["variant"]): row["value"] for row in changed}


def test_every_method_beats_the_noisy_input_and_correction_helps_averaging_filters(images):
    val, test = images
    rows, examples = baselines.run(val, test, 0.4)
    noisy_psnr = evaluate.scores(*test)["psnr_of_mean_mse"]
    assert {row["method"] for row in rows} == {method.name for method in baselines.METHODS}
    for row in rows:
        assert row["psnr_of_mean_mse"] > noisy_psnr, row["method"]
        assert row["seconds_per_image"] > 0 and row["images"] == 40
    by = {(row["method"], row["variant"]): row["psnr_of_mean_mse"] for row in rows}
    assert by[("gaussian", "corrected")] > by[("gaussian", "as_is")] + 0.5
    assert examples["nl_means/corrected"].shape == (6, 28, 28, 1)


def test_without_the_bm3d_package_the_baselines_run_and_leave_bm3d_out(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # what Python does when it is not installed
    val, test = images
    rows, examples = baselines.run(val, test, 0.4, methods=[baselines.method("gaussian")])
    assert not baselines.bm3d_available()
    assert {row["method"] for row in rows} == {"gaussian"}
    assert set(examples) == {"gaussian/as_is", "gaussian/corrected"}


def test_with_the_bm3d_package_bm3d_runs_on_its_stated_subset(images, monkeypatch):
    """An importable `bm3d` (a stand-in module: the package itself is not installed here) is
    called per image with each sigma of its grid, and BM3D gets its rows on the first
    `bm3d_images` test images."""
    calls = []

    def fake_bm3d(image, sigma_psd):
        calls.append((image.shape, sigma_psd))
        return image * 0.9

    monkeypatch.setitem(sys.modules, "bm3d", types.SimpleNamespace(bm3d=fake_bm3d))
    val, test = images
    gaussian = [baselines.method("gaussian")]
    rows, examples = baselines.run(val, test, 0.4, methods=gaussian, bm3d_images=7)
    assert baselines.bm3d_available()
    bm3d_rows = [row for row in rows if row["method"] == "bm3d"]
    assert [row["variant"] for row in bm3d_rows] == ["as_is", "corrected"]
    assert all(row["images"] == 7 and row["parameter"] == "sigma" for row in bm3d_rows)
    assert {shape for shape, _ in calls} == {(28, 28)}
    assert {sigma for _, sigma in calls} == set(baselines.BM3D.grid)
    assert examples["bm3d/as_is"].shape == (6, 28, 28, 1)


# --- Speed without other numbers: stacks, chunks, threads, a stated subset ---


def _scikit_image(name: str, image: np.ndarray, value: float) -> np.ndarray:
    """The per-image scikit-image call each stacked filter stands for."""
    from skimage.restoration import denoise_tv_chambolle, denoise_wavelet

    if name == "tv_chambolle":
        return denoise_tv_chambolle(image, weight=value)
    return denoise_wavelet(
        image, sigma=value, wavelet="db2", mode="soft", method="BayesShrink", rescale_sigma=False
    )


@pytest.mark.parametrize("name", ["tv_chambolle", "wavelet"])
def test_the_stacked_filters_equal_scikit_image_one_image_at_a_time_to_the_bit(images, name):
    (_, val_noisy), _ = images
    method = baselines.method(name)
    for value in method.grid:
        expected = np.stack([_scikit_image(name, image[..., 0], value) for image in val_noisy])
        stacked = method.apply(val_noisy, value)
        assert stacked.dtype == val_noisy.dtype and stacked.shape == val_noisy.shape
        np.testing.assert_array_equal(stacked[..., 0], expected, err_msg=f"{name} {value}")


def test_the_median_equals_scipy_s_median_filter(images):
    from scipy.ndimage import median_filter

    (_, val_noisy), _ = images
    for size in baselines.method("median").grid:
        np.testing.assert_array_equal(
            baselines.method("median").apply(val_noisy, size),
            median_filter(val_noisy, size=(1, size, size, 1)),
        )


def test_the_stacked_total_variation_stops_each_image_where_scikit_image_does(images):
    """A flat image converges at once and a noisy one iterates: in one stack each still gets
    its own stopping point (and so scikit-image's result)."""
    from skimage.restoration import denoise_tv_chambolle

    (_, val_noisy), _ = images
    stack = np.concatenate([np.full((1, 28, 28, 1), 0.5, np.float32), val_noisy[:3]])
    tv = baselines.method("tv_chambolle").apply(stack, 0.1)
    for image, result in zip(stack, tv, strict=True):
        np.testing.assert_array_equal(result[..., 0], denoise_tv_chambolle(image[..., 0], 0.1))


def _numbers(rows):
    """Rows without the timing, which is the only thing threads may change."""
    return [
        {key: value for key, value in row.items() if key != "seconds_per_image"} for row in rows
    ]


def test_chunks_and_threads_change_no_number(images, monkeypatch):
    val, test = images
    serial, serial_examples = baselines.run(val, test, 0.4, threads=1)
    monkeypatch.setattr(baselines, "CHUNK", 7)  # 40 test images: six chunks, the last short
    parallel, parallel_examples = baselines.run(val, test, 0.4, threads=2)
    assert _numbers(parallel) == _numbers(serial)
    assert parallel_examples.keys() == serial_examples.keys()
    for key, shown in serial_examples.items():
        np.testing.assert_array_equal(parallel_examples[key], shown)  # 6 images over 2 chunks
    for row in parallel:
        assert row["seconds_per_image"] > 0


def test_run_s_rows_are_evaluate_s_scores_of_the_chosen_filter(images, monkeypatch):
    """`run` scores chunk by chunk without keeping the images: its numbers are still
    `evaluate.scores` of `denoise` with `choose`'s values on all the test images."""
    monkeypatch.setattr(baselines, "CHUNK", 16)
    val, test = images
    median = baselines.method("median")
    rows, examples = baselines.run(val, test, 0.4, methods=[median], keep=20)
    chosen = baselines.choose(median, *val, 0.4)
    outputs = baselines.denoise(
        median, test[1], {v: value for v, (value, _) in chosen.items()}, 0.4
    )
    for row in rows:
        denoised, _ = outputs[row["variant"]]
        expected = evaluate.scores(test[0], denoised)
        assert {key: row[key] for key in expected} == expected
        assert row["value"] == chosen[row["variant"]][0]
        np.testing.assert_array_equal(examples[f"median/{row['variant']}"], denoised[:20])


def test_choose_is_the_lowest_mean_validation_mse_over_the_grid(images, monkeypatch):
    monkeypatch.setattr(baselines, "CHUNK", 9)
    val, _ = images
    wavelet = baselines.method("wavelet")
    expected = {}
    for value in wavelet.grid:
        filtered = np.clip(wavelet.apply(val[1], value), 0.0, 1.0)
        for variant, denoised in (
            ("as_is", filtered),
            ("corrected", baselines.unclip(filtered, 0.4)),
        ):
            mse = float(evaluate.per_image_mse(val[0], denoised).mean())
            if variant not in expected or mse < expected[variant][1]:
                expected[variant] = (value, mse)
    assert baselines.choose(wavelet, *val, 0.4, threads=2) == expected


def test_a_slow_method_is_scored_on_its_stated_first_test_images(images):
    val, test = images
    tv = baselines.method("tv_chambolle")
    limited = baselines.Method(tv.name, tv.parameter, tv.grid, tv.apply, test_images=15)
    rows, examples = baselines.run(val, test, 0.4, methods=[limited])
    full, _ = baselines.run(val, (test[0][:15], test[1][:15]), 0.4, methods=[tv])
    assert [row["images"] for row in rows] == [15, 15]
    assert _numbers(rows) == _numbers(full)  # the first 15: the same choice, the same scores
    assert examples["tv_chambolle/corrected"].shape == (6, 28, 28, 1)
    # Non-local means states its subset; with fewer test images than that, all of them.
    assert baselines.method("nl_means").test_images == 2000
    assert all(baselines.method(name).test_images is None for name in ("gaussian", "median"))


@pytest.mark.parametrize(("omp", "expected"), [("3", 3), ("", None), ("0", None), ("many", None)])
def test_workers_follow_a_batch_job_s_share_else_the_usable_cores(monkeypatch, omp, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert baselines.workers() == (expected or cores)
