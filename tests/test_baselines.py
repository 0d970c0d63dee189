import numpy as np
import pytest

from pipeline import baselines, data, noise
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


def test_parameters_are_chosen_on_validation_only(images):
    """Changing the test images (clean or noisy) never changes a chosen parameter."""
    val, test = images
    rows, _ = baselines.run(val, test, 0.4)
    rng = np.random.default_rng(5)
    other_test = (rng.random(test[0].shape, dtype=np.float32), rng.random(test[1].shape, dtype=np.float32))
    other_rows, _ = baselines.run(val, other_test, 0.4)
    chosen = {(row["method"], row["variant"]): row["value"] for row in rows}
    assert chosen == {(row["method"], row["variant"]): row["value"] for row in other_rows}
    # …while other validation images can change them: the choice does depend on validation.
    flat_val = (np.full_like(val[0], 0.5), noise.add_gaussian_noise(np.full_like(val[0], 0.5), 0, 0.4, rng))
    changed, _ = baselines.run(flat_val, test, 0.4)
    assert chosen != {(row["method"], row["variant"]): row["value"] for row in changed}


def test_every_method_beats_the_noisy_input_and_correction_helps_averaging_filters(images):
    val, test = images
    rows, examples = baselines.run(val, test, 0.4)
    noisy_psnr = baselines.quality(*test)["psnr_of_mean_mse"]
    assert {row["method"] for row in rows} == {method.name for method in baselines.METHODS}
    for row in rows:
        assert row["psnr_of_mean_mse"] > noisy_psnr, row["method"]
        assert row["seconds_per_image"] > 0 and row["images"] == 40
    by = {(row["method"], row["variant"]): row["psnr_of_mean_mse"] for row in rows}
    assert by[("gaussian", "corrected")] > by[("gaussian", "as_is")] + 0.5
    assert examples["nl_means/corrected"].shape == (6, 28, 28, 1)


def test_bm3d_is_optional():
    assert isinstance(baselines.bm3d_available(), bool)
