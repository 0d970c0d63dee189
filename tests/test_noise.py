import numpy as np
import pytest

from pipeline.noise import add_gaussian_noise


def test_noise_has_the_asked_mean_and_std_where_nothing_is_clipped():
    images = np.full((200, 28, 28, 1), 0.5, dtype=np.float32)  # mid-grey, far from 0 and 1
    noisy = add_gaussian_noise(images, mean=0.05, std=0.1, rng=np.random.default_rng(0))
    noise = noisy - images
    assert noise.mean() == pytest.approx(0.05, abs=0.002)
    assert noise.std() == pytest.approx(0.1, rel=0.01)


def test_output_is_float32_clipped_and_new():
    images = np.random.default_rng(1).random((50, 28, 28, 1), dtype=np.float32)
    noisy = add_gaussian_noise(images, mean=0.0, std=0.4, rng=np.random.default_rng(2))
    assert noisy.dtype == np.float32 and noisy.shape == images.shape
    assert noisy.min() == 0.0 and noisy.max() == 1.0  # std 0.4 pushes pixels past both ends
    assert not np.shares_memory(noisy, images)


def test_same_seed_same_noise_other_seed_other_noise():
    images = np.zeros((10, 28, 28, 1), dtype=np.float32) + 0.5
    first = add_gaussian_noise(images, 0.0, 0.4, np.random.default_rng(123))
    again = add_gaussian_noise(images, 0.0, 0.4, np.random.default_rng(123))
    other = add_gaussian_noise(images, 0.0, 0.4, np.random.default_rng(124))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_black_pixels_average_about_0_16_after_clipping():
    # A black pixel plus N(0, 0.4²), clipped at 0, has mean 0.4 / sqrt(2π) ≈ 0.1596.
    images = np.zeros((100, 28, 28, 1), dtype=np.float32)
    noisy = add_gaussian_noise(images, 0.0, 0.4, np.random.default_rng(3))
    assert noisy.mean() == pytest.approx(0.4 / np.sqrt(2 * np.pi), rel=0.01)


from pipeline import noise as noise_module  # noqa: E402
from pipeline.config import load_config  # noqa: E402


@pytest.mark.parametrize(
    "kind, value", [("poisson", 10.0), ("speckle", 0.5), ("salt_pepper", 0.1), ("blur", 1.0)]
)
def test_other_degradations_stay_in_range_and_change_the_images(kind, value):
    images = np.random.default_rng(0).random((20, 28, 28, 1), dtype=np.float32)
    degraded = noise_module.degrade(images, kind, value, np.random.default_rng(1))
    assert degraded.dtype == np.float32 and degraded.shape == images.shape
    assert degraded.min() >= 0.0 and degraded.max() <= 1.0
    assert not np.allclose(degraded, images)


def test_salt_and_pepper_hits_the_stated_share():
    images = np.full((50, 28, 28, 1), 0.5, dtype=np.float32)
    noisy = noise_module.add_salt_pepper_noise(images, 0.1, np.random.default_rng(2))
    hit = noisy != 0.5
    assert hit.mean() == pytest.approx(0.1, abs=0.01)
    assert set(np.unique(noisy[hit])) == {0.0, 1.0}


def test_speckle_leaves_black_black():
    images = np.zeros((5, 28, 28, 1), dtype=np.float32)
    assert noise_module.add_speckle_noise(images, 0.5, np.random.default_rng(3)).max() == 0.0


def test_random_levels_give_each_image_its_own_std():
    images = np.full((400, 28, 28, 1), 0.5, dtype=np.float32)
    noisy = noise_module.add_gaussian_noise_range(images, 0.0, 0.05, 0.2, np.random.default_rng(4))
    stds = (noisy - images).reshape(400, -1).std(axis=1)
    assert stds.min() > 0.04 and stds.max() < 0.21 and stds.max() - stds.min() > 0.1


def test_random_levels_are_gaussian_noise_with_a_std_per_image():
    images = np.full((30, 28, 28, 1), 0.5, dtype=np.float32)
    noisy = noise_module.add_gaussian_noise_range(images, 0.0, 0.05, 0.2, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    stds = rng.uniform(0.05, 0.2, size=(30, 1, 1, 1)).astype(np.float32)
    np.testing.assert_array_equal(noisy, add_gaussian_noise(images, 0.0, stds, rng))


def test_corrupt_follows_the_config():
    images = np.full((10, 28, 28, 1), 0.5, dtype=np.float32)
    lab = load_config().noise
    np.testing.assert_array_equal(
        noise_module.corrupt(images, lab, np.random.default_rng(5)),
        noise_module.add_gaussian_noise(images, 0.0, 0.4, np.random.default_rng(5)),
    )
    pepper = load_config(overrides=["noise.type=salt_pepper", "noise.amount=0.2"]).noise
    assert (
        noise_module.corrupt(images, pepper, np.random.default_rng(6)) != 0.5
    ).mean() == pytest.approx(0.2, abs=0.02)
