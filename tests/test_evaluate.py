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
    assert stats == {"min": 1.0, "max": 10.0, "mean": 4.0, "median": 2.5, "std": pytest.approx(3.5355, abs=1e-4)}


def test_class_counts_cover_every_class():
    counts = evaluate.class_counts(np.array([0, 0, 9], dtype=np.uint8))
    assert [row["count"] for row in counts] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert counts[7]["name"] == "Sneaker"


def test_reconstruction_summary():
    mse = np.array([0.01, 0.02, 0.03])
    summary = evaluate.reconstruction(mse, mse * 8)
    assert summary["images"] == 3
    assert summary["mse"]["mean"] == pytest.approx(0.02)
    assert summary["psnr_of_mean_mse"] == pytest.approx(evaluate.psnr(0.02))
    assert summary["noisy_input"]["mse"]["median"] == pytest.approx(0.16)
    assert summary["first_mse"] == pytest.approx([0.01, 0.02, 0.03])
