import numpy as np

from pipeline import baselines, data, robustness
from tests.conftest import SUBSET_DIR


def test_study_rows_for_every_condition_with_the_identity_model():
    dataset = data.load(SUBSET_DIR)
    val = data.to_unit_float(dataset.train_images[:30])
    test = data.to_unit_float(dataset.test_images[:20])
    conditions = (("gaussian", 0.1), ("gaussian", 0.5), ("blur", 1.0))
    rows = robustness.study(
        lambda images: images,
        val,
        test,
        baselines.method("gaussian"),
        seed=1,
        conditions=conditions,
    )
    assert [(row["kind"], row["value"]) for row in rows] == list(conditions)
    for row in rows:  # a model that returns its input scores exactly as the input
        assert row["model"]["psnr"] == row["input"]["psnr"]
        assert row["baseline"]["method"] == "gaussian" and row["baseline"]["variant"] in (
            "as_is",
            "corrected",
        )
    assert rows[0]["input"]["psnr"] > rows[1]["input"]["psnr"]  # more noise, lower PSNR
    assert rows[2]["baseline"]["variant"] == "as_is"  # no Gaussian std to unclip a blur with


def test_study_is_repeatable():
    images = np.random.default_rng(0).random((10, 28, 28, 1), dtype=np.float32)

    def run():
        return robustness.study(
            lambda x: x, images, images, baselines.method("median"), 3, (("poisson", 10.0),)
        )

    assert run() == run()
