import numpy as np

from pipeline import baselines, data, noise, robustness
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


def test_the_baseline_chooses_on_the_stated_first_validation_images_and_the_noise_stays():
    """Fewer choosing images leave the test noise (the input's scores) as it was; each row
    states how many chose, and its value is the one those images alone choose."""
    dataset = data.load(SUBSET_DIR)
    val = data.to_unit_float(dataset.train_images[:40])
    test = data.to_unit_float(dataset.test_images[:20])
    tv = baselines.method("tv_chambolle")
    conditions = (("gaussian", 0.4), ("salt_pepper", 0.1))

    def run(selection_images):
        return robustness.study(lambda x: x, val, test, tv, 2, conditions, selection_images)

    few, every = run(15), run(40)
    assert [row["baseline"]["selection_images"] for row in few] == [15, 15]
    assert [row["baseline"]["selection_images"] for row in every] == [40, 40]
    assert [row["input"] for row in few] == [row["input"] for row in every]
    # What the study picks on 15 images is what choosing on those 15 alone picks.
    rng = np.random.default_rng([2, 1])
    val_noisy = noise.degrade(val, "salt_pepper", 0.1, rng)
    chosen = baselines.choose(tv, val[:15], val_noisy[:15], None)
    assert few[1]["baseline"]["parameter"] == chosen["as_is"][0]
    assert robustness.SELECTION_IMAGES == 300
    # With fewer validation images than that, all of them choose.
    (row,) = robustness.study(lambda x: x, val, test, tv, 2, conditions[:1])
    assert row["baseline"]["selection_images"] == 40


def test_threads_change_no_number_of_the_study(monkeypatch):
    monkeypatch.setattr(baselines, "CHUNK", 6)  # several chunks to share out
    dataset = data.load(SUBSET_DIR)
    val = data.to_unit_float(dataset.train_images[:30])
    test = data.to_unit_float(dataset.test_images[:25])
    wavelet = baselines.method("wavelet")
    conditions = (("gaussian", 0.3), ("poisson", 10.0))

    def run(threads):
        return robustness.study(lambda x: x, val, test, wavelet, 4, conditions, threads=threads)

    assert run(1) == run(2)
