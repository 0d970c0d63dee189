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
