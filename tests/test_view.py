"""pipeline.view on its own: each verdict both ways at its threshold, each ranking, share, gain
and change, from small hand-made metrics (and the committed quick run's, end to end)."""

import pytest

from pipeline import view
from tests.test_report import sample_metrics

EPSILON = 1e-9


def classes(*values, key="ssim"):
    """Per-class rows named a, b, c, … with `key` set to each value."""
    return [{"name": chr(ord("a") + index), key: value} for index, value in enumerate(values)]


# --- The answers: each verdict on both sides of its line ---


@pytest.mark.parametrize(
    "snr_db, stronger", [(0.0, False), (-EPSILON, True), (3.9, False), (-1.5, True)]
)
def test_noise_stronger_than_the_image_below_0_db(snr_db, stronger):
    answer = view.noise_answer({"effect": {"snr_db": snr_db}})
    assert answer["noise_stronger_than_image"] is stronger


@pytest.mark.parametrize(
    "overfit, still_improving, final_gap, verdict, not_above",
    [
        (True, False, 0.01, "overfit", False),
        (True, True, 0.0, "overfit", True),  # the recorded overfit wins
        (False, True, -0.05, "still_improving", True),
        (False, False, EPSILON, "within_tolerance", False),
    ],
)
def test_overfitting_verdict(overfit, still_improving, final_gap, verdict, not_above):
    answer = view.overfitting_answer(
        {"overfit": overfit, "still_improving": still_improving, "final_gap": final_gap}
    )
    assert answer == {"verdict": verdict, "validation_not_above_training": not_above}


@pytest.mark.parametrize(
    "worst_ssim, keeps", [(view.SILHOUETTE_SSIM, True), (view.SILHOUETTE_SSIM - EPSILON, False)]
)
def test_every_class_keeps_its_silhouette_from_the_threshold_up(worst_ssim, keeps):
    error_analysis = {
        "per_class": classes(0.7, worst_ssim, 0.9, 0.8),
        "extremes": {"best": [{"name": "x", "mse": 0.01}], "worst": [{"name": "y", "mse": 0.1}]},
    }
    answer = view.details_answer(error_analysis)
    assert answer["all_keep_silhouette"] is keeps
    assert [row["name"] for row in answer["best_classes"]] == ["c", "d", "a"]
    assert [row["name"] for row in answer["worst_classes"]] == ["b", "a", "d"]  # worst first
    assert answer["best_image"]["name"] == "x" and answer["worst_image"]["name"] == "y"


def residual(**change):
    values = {
        "std": 0.2,
        "neighbour_correlation": 0.58,
        "edge_mean_abs": 0.3,
        "flat_mean_abs": 0.12,
        "background_mean": 0.07,
    }
    return {**values, **change}


@pytest.mark.parametrize(
    "correlation, structured",
    [(view.STRUCTURED_CORRELATION, False), (view.STRUCTURED_CORRELATION + EPSILON, True)],
)
def test_residual_is_structured_above_the_correlation_threshold(correlation, structured):
    answer = view.residual_answer(
        residual(neighbour_correlation=correlation), {"effect": {"added_std": 0.25}}
    )
    assert answer["structured"] is structured
    assert answer["removed"] == pytest.approx(0.2)  # 1 - 0.2 / 0.25
    assert answer["edge_to_flat"] == pytest.approx(2.5)


@pytest.mark.parametrize(
    "background, veil", [(view.BACKGROUND_VEIL, False), (view.BACKGROUND_VEIL + EPSILON, True)]
)
def test_grey_veil_above_half_a_grey_level(background, veil):
    answer = view.residual_answer(
        residual(background_mean=background), {"effect": {"added_std": 0.25}}
    )
    assert answer["background_veil"] is veil


@pytest.mark.parametrize(
    "sharpness, threshold, blurred", [(0.9, 0.9, False), (0.9 - EPSILON, 0.9, True)]
)
def test_blurred_below_the_threshold(sharpness, threshold, blurred):
    per_class = classes(0.95, 0.6, 0.9, 0.4, key="sharpness")
    answer = view.blur_answer(
        {"sharpness": sharpness, "blur_threshold": threshold, "per_class": per_class}
    )
    assert answer["blurred"] is blurred
    assert [row["name"] for row in answer["blurred_classes"]] == ["d", "b"]  # most blurred first


def test_blur_names_a_few_classes_when_many_are_below():
    per_class = classes(0.5, 0.8, 0.6, 0.3, 0.7, key="sharpness")  # all below 0.9
    answer = view.blur_answer({"sharpness": 0.6, "blur_threshold": 0.9, "per_class": per_class})
    assert (answer["classes_below"], answer["classes"]) == (5, 5)
    assert [row["name"] for row in answer["blurred_classes"]] == ["d", "a", "c"]


def anomalies(share=0.016, edge_ratio=1.6, counts=(3, 0, 5, 5), first_share=0.05):
    return {
        "quantile": 0.99,
        "share": share,
        "edge_ratio": edge_ratio,
        "count": sum(counts),
        "images": [{"name": f"image {index}"} for index in range(sum(counts))],
        "by_class": [
            {"name": name, "count": count, "share_of_class": first_share if count == 5 else 0.01}
            for name, count in zip("abcd", counts, strict=True)
        ],
    }


@pytest.mark.parametrize(
    "first_share, concentrated",
    [
        (view.CONCENTRATION_FACTOR * 0.016, False),
        (view.CONCENTRATION_FACTOR * 0.016 + EPSILON, True),
    ],
)
def test_anomalies_concentrate_past_twice_the_overall_share(first_share, concentrated):
    answer = view.anomalies_answer(anomalies(first_share=first_share))
    assert answer["concentrated"] is concentrated
    assert [row["name"] for row in answer["top_classes"]] == ["c", "d", "a"]  # ties: label order
    assert answer["percentile"] == 99 and answer["found"] is True


@pytest.mark.parametrize(
    "edge_ratio, detailed",
    [(view.DETAILED_EDGE_RATIO, False), (view.DETAILED_EDGE_RATIO + EPSILON, True)],
)
def test_anomalies_are_the_detailed_images_past_the_edge_ratio(edge_ratio, detailed):
    assert view.anomalies_answer(anomalies(edge_ratio=edge_ratio))["detailed"] is detailed


def test_no_anomaly_is_neither_concentrated_nor_listed():
    answer = view.anomalies_answer(anomalies(counts=(0, 0, 0, 0)))
    assert answer["found"] is False and answer["concentrated"] is False
    assert answer["top_classes"] == []
    assert view.anomaly_table(anomalies(counts=(0, 0, 0, 0)))["found"] is False


def baseline_rows(*psnrs_by_variant):
    return [
        {"method": f"m{index}", "variant": variant, "psnr_of_mean_mse": psnr}
        for index, (variant, psnr) in enumerate(psnrs_by_variant)
    ]


@pytest.mark.parametrize(
    "model_psnr, wins, margin", [(15.0, False, 0.0), (15.0 + 0.5, True, 0.5), (14.0, False, 1.0)]
)
def test_model_against_the_best_classical_filter(model_psnr, wins, margin):
    rows = baseline_rows(("as_is", 13.0), ("corrected", 15.0), ("as_is", 14.0), ("corrected", 14.0))
    answer = view.baselines_answer({"rows": rows}, {"psnr_of_mean_mse": model_psnr})
    assert answer["best"]["method"] == "m1"
    assert answer["model_wins"] is wins and answer["margin"] == pytest.approx(margin)
    assert answer["correction_gain"] == pytest.approx((15.0 + 14.0) / 2 - (13.0 + 14.0) / 2)


def test_no_correction_gain_without_corrected_filters():
    answer = view.baselines_answer(
        {"rows": baseline_rows(("as_is", 13.0))}, {"psnr_of_mean_mse": 14.0}
    )
    assert answer["correction_gain"] is None
    assert view.baselines_answer(None, {"psnr_of_mean_mse": 14.0}) is None


def generalisation_rows(*model_minus_baseline, least_harmed=True):
    rows = [
        {
            "kind": "gaussian",
            "value": 0.1 * (index + 1),
            "input": {"psnr": 20.0 if index == 0 and least_harmed else 5.0},
            "model": {"psnr": 15.0 + difference},
            "baseline": {"psnr": 15.0},
        }
        for index, difference in enumerate(model_minus_baseline)
    ]
    rows.append(
        {
            "kind": "poisson",
            "value": 10,
            "input": {"psnr": 12.0},
            "model": {"psnr": 12.0},
            "baseline": {"psnr": 13.0},
        }
    )
    return {"rows": rows}


@pytest.mark.parametrize(
    "differences, wins, wins_range",
    [
        ((1, 1, 1), "all", (0.1, 0.30000000000000004)),
        ((0, 1, 1), "some", (0.2, 0.30000000000000004)),  # a tie is no win
        ((-1, 0, -EPSILON), "none", None),
    ],
)
def test_generalisation_where_the_model_beats_the_filter(differences, wins, wins_range):
    answer = view.generalisation_answer(generalisation_rows(*differences))
    assert answer["model_wins"] == wins and answer["wins_range"] == wins_range
    assert answer["range"] == (0.1, 0.30000000000000004)
    assert answer["least_noise"]["value"] == 0.1 and answer["harms_least_noise"] is True
    assert [row["improves"] for row in answer["other_noises"]] == [False]  # equal: no gain


def test_the_least_noise_is_harmed_only_below_its_input():
    answer = view.generalisation_answer(generalisation_rows(1, 1, least_harmed=False))
    assert answer["harms_least_noise"] is False
    assert view.generalisation_answer(None) is None


# --- The report: sums, shares, sorts and where the model came from ---


def test_class_shares_sum_to_the_total_and_subset_is_flagged():
    dataset = {
        "train_shape": [3000, 28, 28],
        "test_shape": [500, 28, 28],
        "available": {"train": 4000, "test": 1000},
        "class_counts": [{"name": "a", "count": 1000}, {"name": "b", "count": 2000}],
    }
    shown = view.dataset(dataset)
    assert shown["class_total"] == 3000 and shown["subset"] is True
    assert [row["share"] for row in shown["class_counts"]] == [1 / 3, 2 / 3]
    dataset["available"]["train"] = 3000
    assert view.dataset(dataset)["subset"] is False


@pytest.mark.parametrize(
    "cache, notebook, kind",
    [
        (None, None, "untracked"),
        ({"trained": True, "reason": "first"}, None, "first"),
        ({"trained": True, "reason": "retrain"}, {"reused_from": None}, "retrain"),
        ({"trained": True, "reason": "changed"}, None, "changed"),
        ({"trained": False, "reason": "cached"}, None, "reused_model"),
        ({"trained": True, "reason": "first"}, {"reused_from": "run-0"}, "reused_run"),
    ],
)
def test_model_origin(cache, notebook, kind):
    provenance = None if notebook is None else {"notebook": notebook}
    assert view.model_origin({"cache": cache}, provenance)["kind"] == kind


@pytest.mark.parametrize("resumed, shown", [(0, None), (None, None), (3, 3)])
def test_resumed_training_is_shown_from_epoch_1(resumed, shown):
    cache = {"trained": True, "reason": "first", "resumed_from_epoch": resumed}
    assert view.model_origin({"cache": cache}, None)["resumed_from_epoch"] == shown


def test_tables_are_sorted_for_the_reader():
    rows = [
        {"method": "a", "psnr_of_mean_mse": 13.0, "seconds_per_image": 0.002},
        {"method": "b", "psnr_of_mean_mse": 15.0, "seconds_per_image": 0.0005},
    ]
    baselines = view.baseline_table({"rows": rows}, {"std": 0.4})
    assert [row["method"] for row in baselines["rows"]] == ["b", "a"]
    assert baselines["rows"][0]["milliseconds_per_image"] == pytest.approx(0.5)
    assert round(baselines["black_level"], 2) == 0.16  # 0.4 / √(2π), less what clips at 1
    assert view.baseline_table(None, {"std": 0.4}) is None
    table = view.anomaly_table(anomalies())
    assert [row["name"] for row in table["by_class"]] == ["c", "d", "a"]
    assert len(view.anomaly_table(anomalies(counts=(9, 9, 0, 0)))["shown_names"]) == 10


def test_the_trained_noise_is_marked_in_the_generalisation_table():
    rows = generalisation_rows(1, 1)["rows"]
    table = view.generalisation_table({"rows": rows}, {"std": 0.2})
    assert [row["trained_on"] for row in table["rows"]] == [False, True, False]


def test_comparison_rows_carry_the_change_in_percent():
    rows = [
        {"name": "mse_mean", "relative_change": -0.0125, "verdict": "better"},
        {"name": "psnr_db", "relative_change": None, "verdict": "same"},
    ]
    table = view.comparison_table({"baseline": "run-0", "rows": rows})
    assert [row["relative_change_percent"] for row in table["rows"]] == [-1.25, None]
    assert table["baseline"] == "run-0" and view.comparison_table(None) is None


# --- `dae-report compare` ---


def model_row(name, psnr, model=None, **extra):
    return {
        "name": name,
        "model": model or name,
        "psnr_of_mean_mse": psnr,
        "seconds_per_image": 0.001,
        "training_seconds": 60,
        **extra,
    }


@pytest.mark.parametrize("target, reaches", [(21.0, True), (21.0 + EPSILON, False)])
def test_comparison_ranks_models_and_checks_the_target(target, reaches):
    models = [
        model_row("lab", 18.0),
        model_row("unet", 21.0),
        model_row("residual", 20.0),
        model_row(
            "unet (random std)",
            20.5,
            model="unet",
            std_range=[0.1, 0.7],
            curve=[{"std": 0.1, "psnr": 25.0}, {"std": 0.4, "psnr": 20.5}],
        ),
    ]
    models[1]["curve"] = [{"std": 0.1, "psnr": 24.0}, {"std": 0.4, "psnr": 21.0}]
    shown = view.comparison({"models": models, "target_psnr_db": target})
    assert [row["name"] for row in shown["ranked"]] == [
        "unet",
        "unet (random std)",
        "residual",
        "lab",
    ]
    assert [row["is_best"] for row in shown["ranked"]] == [True, False, False, False]
    assert shown["best"]["name"] == "unet" and shown["reaches_target"] is reaches
    assert shown["gain_over_lab"] == pytest.approx(3.0)
    assert [row["has_width"] for row in shown["recipes"]] == [False, True, True, True]
    assert shown["random_levels"] == {
        "std_range": [0.1, 0.7],
        "points": [
            {"std": 0.1, "fixed": 24.0, "random": 25.0},
            {"std": 0.4, "fixed": 21.0, "random": 20.5},
        ],
    }


def test_comparison_without_the_lab_model_or_random_levels():
    shown = view.comparison({"models": [model_row("unet", 21.0)], "target_psnr_db": 21.0})
    assert shown["lab"] is None and shown["gain_over_lab"] is None
    assert shown["random_levels"] is None


def test_the_committed_run_end_to_end():
    metrics = sample_metrics()
    shown = view.report(metrics)
    reconstruction = metrics["reconstruction"]
    assert shown["reconstruction"]["reduction"] == pytest.approx(
        1 - reconstruction["mse"]["mean"] / reconstruction["noisy_input"]["mse"]["mean"]
    )
    assert shown["training"]["final_val_loss"] == metrics["training"]["val_loss"][-1]
    assert shown["origin"]["kind"] == "first"
    assert set(view.answers(metrics)) == {
        "noise",
        "overfitting",
        "details",
        "residual",
        "blur",
        "anomalies",
        "baselines",
        "generalisation",
    }


def test_only_finished_stages_are_listed():
    provenance = {
        "stages": {
            "data": {"started": "2026-11-27T11:14:09.999+00:00", "seconds": 0.5},
            "html": {"started": "2026-11-27T11:16:07.667+00:00"},  # running while it renders
        }
    }
    assert view.finished_stages(provenance) == [
        {"name": "data", "started": "2026-11-27T11:14:09.999+00:00", "seconds": 0.5}
    ]
    assert view.finished_stages(None) == []
