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
