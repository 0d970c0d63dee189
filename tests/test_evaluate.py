import warnings

import numpy as np
import pytest

from pipeline import evaluate


def test_per_image_mse():
    clean = np.zeros((2, 2, 2, 1), dtype=np.float32)
    reconstructed = np.array([[[[0.5], [0.5]], [[0.5], [0.5]]], [[[1.0], [0.0]], [[0.0], [0.0]]]])
    np.testing.assert_allclose(evaluate.per_image_mse(clean, reconstructed), [0.25, 0.25])


@pytest.mark.parametrize("mse, expected", [(1.0, 0.0), (0.01, 20.0), (0.0118, 19.2812)])
def test_psnr(mse, expected):
    assert evaluate.psnr(mse) == pytest.approx(expected, abs=1e-4)


def test_summarise():
    stats = evaluate.summarise(np.array([1.0, 2.0, 3.0, 10.0]))
    assert stats == {
        "min": 1.0,
        "max": 10.0,
        "mean": 4.0,
        "median": 2.5,
        "std": pytest.approx(3.5355, abs=1e-4),
    }


def test_class_counts_cover_every_class():
    counts = evaluate.class_counts(np.array([0, 0, 9], dtype=np.uint8))
    assert [row["count"] for row in counts] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert counts[7]["name"] == "Sneaker"


def test_psnr_of_mean_mse_is_the_psnr_of_the_mean_not_the_mean_psnr():
    mse = np.array([0.001, 0.1])
    assert evaluate.psnr_of_mean_mse(mse) == pytest.approx(evaluate.psnr(0.0505))
    assert evaluate.psnr_of_mean_mse(mse) < evaluate.psnr(mse).mean()  # 12.97 dB < 20 dB
    assert type(evaluate.psnr_of_mean_mse(mse)) is float


def test_scores_of_denoised_against_clean_images():
    rng = np.random.default_rng(0)
    clean = rng.random((4, 28, 28, 1)).astype(np.float32)
    denoised = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    scores = evaluate.scores(clean, denoised)
    mse = evaluate.per_image_mse(clean, denoised)
    assert list(scores) == ["mse", "psnr", "psnr_of_mean_mse", "ssim"]
    assert scores["mse"] == evaluate.summarise(mse)
    assert scores["psnr"] == evaluate.summarise(evaluate.psnr(mse))
    assert scores["psnr_of_mean_mse"] == evaluate.psnr_of_mean_mse(mse)
    assert scores["ssim"] == evaluate.summarise(evaluate.ssim_per_image(clean, denoised))


def test_reconstruction_summary():
    mse, ssim = np.array([0.01, 0.02, 0.03]), np.array([0.7, 0.8, 0.9])
    noisy_input = {"psnr_of_mean_mse": 8.0}  # evaluate.scores of the noisy images, as it is
    summary = evaluate.reconstruction(mse, ssim, noisy_input)
    assert summary == {
        "images": 3,
        **evaluate.summarise_scores(mse, ssim),
        "first_mse": pytest.approx([0.01, 0.02, 0.03]),
        "noisy_input": noisy_input,
    }
    assert summary["mse"]["mean"] == pytest.approx(0.02)
    assert summary["psnr_of_mean_mse"] == pytest.approx(evaluate.psnr(0.02))
    assert summary["ssim"]["median"] == pytest.approx(0.8)


def test_noise_effect_on_black_and_grey_pixels():
    clean = np.zeros((4, 28, 28, 1), dtype=np.float32)
    clean[:2] = 0.5
    noisy = clean.copy()
    noisy[0, 0, 0, 0] = 1.0  # one pixel clipped high
    noisy[2:] = 0.1  # black pixels brightened
    effect = evaluate.noise_effect(clean, noisy)
    assert effect["clean_black"] == pytest.approx(0.5)
    assert effect["clipped_high"] == pytest.approx(1 / clean.size)
    assert effect["clipped_low"] == pytest.approx(0.0)
    assert effect["added_mean"] > 0
    signal, added = (
        np.sum(clean.astype(np.float64) ** 2),
        np.sum((noisy - clean).astype(np.float64) ** 2),
    )
    assert effect["snr_db"] == pytest.approx(10 * np.log10(signal / added))


@pytest.mark.parametrize(
    "val_loss, overfit, best_epoch, still_improving",
    [
        ([0.30, 0.29, 0.28, 0.27], False, 4, True),  # still going down
        ([0.30, 0.28, 0.2801, 0.2802], False, 2, False),  # flat within tolerance
        ([0.30, 0.28, 0.29, 0.31], True, 2, False),  # clear rise while loss falls
    ],
)
def test_overfitting_verdicts(val_loss, overfit, best_epoch, still_improving):
    result = evaluate.overfitting([0.35, 0.30, 0.27, 0.25], val_loss)
    assert result["overfit"] is overfit
    assert result["best_epoch"] == best_epoch
    assert result["still_improving"] is still_improving
    assert result["final_gap"] == pytest.approx(val_loss[-1] - 0.25)


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    rng = np.random.default_rng(0)
    clean = rng.random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(evaluate.ssim_per_image(clean, clean), 1.0)
    noisy = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1)
    assert (evaluate.ssim_per_image(clean, noisy) < 0.9).all()


def test_ssim_on_a_stack_gives_scikit_images_values_image_by_image():
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import structural_similarity

    from pipeline import data
    from tests.conftest import SUBSET_DIR

    clean = data.load(SUBSET_DIR).test_images[:23, ..., None].astype(np.float32) / 255
    rng = np.random.default_rng(1)
    noisy = np.clip(clean + rng.normal(0, 0.4, clean.shape), 0, 1).astype(np.float32)
    blurred = gaussian_filter(noisy, (0, 1, 1, 0)).astype(np.float32)
    for other in (noisy, blurred):
        expected = [
            structural_similarity(a[..., 0], b[..., 0], data_range=1.0, win_size=7)
            for a, b in zip(clean.astype(np.float64), other.astype(np.float64), strict=True)
        ]
        np.testing.assert_array_equal(evaluate.ssim_per_image(clean, other, chunk=10), expected)


def test_gradient_energy_drops_when_blurred():
    from scipy.ndimage import gaussian_filter

    image = np.zeros((1, 28, 28, 1))
    image[0, 8:20, 8:20, 0] = 1.0
    blurred = gaussian_filter(image, sigma=(0, 1.5, 1.5, 0))
    assert evaluate.gradient_energy(blurred)[0] < evaluate.gradient_energy(image)[0]


def test_per_class_rows_and_sharpness_ratio():
    labels = np.array([0, 0, 7])
    mse = np.array([0.01, 0.03, 0.02])
    rows = evaluate.per_class(
        labels, mse, np.array([0.9, 0.7, 0.8]), np.array([2.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0])
    )
    assert [row["name"] for row in rows] == ["T-shirt/top", "Sneaker"]
    assert rows[0]["mse"] == pytest.approx(0.02) and rows[0]["ssim"] == pytest.approx(0.8)
    assert rows[0]["sharpness"] == pytest.approx(0.5) and rows[1]["sharpness"] == pytest.approx(1.0)


def test_extremes_orders_by_mse():
    result = evaluate.extremes(np.array([0.5, 0.1, 0.9, 0.3]), np.array([1, 2, 3, 4]), count=2)
    assert [item["index"] for item in result["best"]] == [1, 3]
    assert [item["index"] for item in result["worst"]] == [2, 0]
    assert result["worst"][0]["name"] == "Dress"


def test_residual_of_white_noise_is_unstructured_and_of_blur_is_structured():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    clean = np.zeros((20, 28, 28, 1))
    clean[:, 6:22, 6:22, 0] = 0.8
    labels = np.zeros(20, dtype=np.uint8)
    _, white = evaluate.residuals(clean, clean + rng.normal(0, 0.05, clean.shape), labels)
    maps, blur = evaluate.residuals(clean, gaussian_filter(clean, sigma=(0, 1.5, 1.5, 0)), labels)
    assert abs(white["neighbour_correlation"]) < 0.1
    assert blur["neighbour_correlation"] > 0.3  # the threshold the answer uses
    assert blur["edge_mean_abs"] > blur["flat_mean_abs"]
    assert maps.shape == (10, 28, 28) and np.abs(maps[1:]).max() == 0  # classes with no images


def test_chunked_scores_are_the_whole_array_formulas():
    """per_image_mse, the Sobel gradients and residuals work a chunk at a time to keep memory
    low; their values are those of the plain whole-array (or per-image) formulas."""
    from skimage.filters import sobel

    from pipeline import data
    from tests.conftest import SUBSET_DIR

    dataset = data.load(SUBSET_DIR)
    clean = dataset.test_images[..., None].astype(np.float32) / 255
    rng = np.random.default_rng(2)
    denoised = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    difference = clean.astype(np.float64) - denoised.astype(np.float64)
    np.testing.assert_array_equal(
        evaluate.per_image_mse(clean, denoised, chunk=100),
        np.mean(np.square(difference).reshape(len(clean), -1), axis=1),
    )
    # Sobel on a stack of images, chunk boundaries included, is scikit-image's image by image.
    magnitudes = np.stack([sobel(image[..., 0].astype(np.float64)) for image in denoised])
    np.testing.assert_array_equal(evaluate.gradient_magnitude(denoised, chunk=7), magnitudes)
    np.testing.assert_array_equal(
        evaluate.gradient_energy(denoised, chunk=7), [image.mean() for image in magnitudes]
    )
    residual = -difference[..., 0]
    _, stats = evaluate.residuals(clean, denoised, dataset.test_labels)
    edges = evaluate.gradient_mask(clean)
    expected = {
        "mean": residual.mean(),
        "std": residual.std(),
        "mean_abs": np.abs(residual).mean(),
        "share_above_0_1": np.mean(np.abs(residual) > 0.1),
        "neighbour_correlation": np.corrcoef(
            residual[:, :, :-1].ravel(), residual[:, :, 1:].ravel()
        )[0, 1],
        "edge_mean_abs": np.abs(residual[edges]).mean(),
        "flat_mean_abs": np.abs(residual[~edges]).mean(),
        "background_mean": residual[clean[..., 0] == 0].mean(),
    }
    assert stats == pytest.approx(expected, rel=1e-12)
    assert evaluate._neighbour_correlation(residual, chunk=7) == pytest.approx(
        expected["neighbour_correlation"], rel=1e-12
    )


def test_anomaly_threshold_comes_from_validation():
    val_mse = np.linspace(0.0, 1.0, 101)  # 99th percentile: 0.99
    test_mse = np.array([0.5, 0.995, 2.0, 0.1])
    labels = np.array([0, 3, 3, 5])
    result = evaluate.anomalies(val_mse, test_mse, labels, np.array([1.0, 3.0, 3.0, 1.0]))
    assert result["threshold"] == pytest.approx(0.99)
    assert result["count"] == 2 and [item["index"] for item in result["images"]] == [2, 1]
    assert result["by_class"][3] == {"label": 3, "name": "Dress", "count": 2, "share_of_class": 1.0}
    assert result["edge_ratio"] == pytest.approx(3.0 / 2.0)


def test_value_range_of_clean_images_warns_nothing():
    """It is printed in the answer key: a RuntimeWarning there (divide by zero in the SNR of
    images against themselves) would be shown to every student."""
    images = np.linspace(0, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = evaluate.value_range(images)
    assert summary["min"] == 0.0 and summary["max"] == 1.0
    assert evaluate.noise_effect(images, images)["snr_db"] == float("inf")
