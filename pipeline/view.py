"""What the report says about a run's numbers: every verdict, threshold, ranking, sort, sum,
share, gain and signed change that the report, its answers and the model comparison show.

Compute → structure → render: metrics.json holds the measurements; these functions turn them
into plain dicts and lists (numbers, booleans, short strings) that the templates only present,
formatting each number through pipeline.report's locale filters. A template calls one of
`report`, `answers` or `comparison` once and branches on what it returns.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import artifacts
from pipeline.evaluate import ANOMALIES_SHOWN

# --- Where the answers draw their lines (each verdict is stated in the answer's own words) ---

# SSIM (1 = identical) of the worst class from which the answer says every class keeps its
# silhouette and loses only interior detail; below it, the shape itself degrades. A rule of
# thumb, so the answer prints it for the reader to judge.
SILHOUETTE_SSIM = 0.6
# Neighbour correlation of the residual above which it is structured error, not white noise:
# the added noise is independent pixel to pixel (correlation 0), and 0.3 is the conventional
# "medium" correlation, well clear of the estimate's own scatter around 0.
STRUCTURED_CORRELATION = 0.3
# Mean residual on the clean images' black background above which the answer reports a grey
# veil: about half of one 8-bit grey level (0.5 / 255 ≈ 0.002), the smallest offset that
# survives saving or showing the image in 8 bits.
BACKGROUND_VEIL = 0.002
# A class holds the anomalies when its share of anomalous images is more than this many times
# the test set's overall share; below it they spread roughly as the classes do.
CONCENTRATION_FACTOR = 2
# Edge energy of the anomalous images, relative to the test mean, above which the answer calls
# them the most detailed garments: a margin of 20 %, so a ratio near 1 is not read as detail.
DETAILED_EDGE_RATIO = 1.2
# Classes named at each end of a ranking (best three, worst three, most anomalous three).
CLASSES_NAMED = 3
MILLISECONDS = 1000  # seconds_per_image → milliseconds per image in the tables


def report(metrics: dict, provenance: dict | None = None) -> dict:
    """Everything report.html.j2 derives from a build's metrics (its answers: `answers`) and,
    for where the model came from, the build's record (run.json)."""
    reconstruction = metrics["reconstruction"]
    mse, noisy_mse = reconstruction["mse"], reconstruction["noisy_input"]["mse"]
    return {
        "origin": model_origin(metrics["training"], provenance),
        "dataset": dataset(metrics["dataset"]),
        "training": training(metrics["training"]),
        # the share of the noisy input's mean MSE that the model removes
        "reconstruction": {"reduction": 1 - mse["mean"] / noisy_mse["mean"]},
        "anomalies": anomaly_table(metrics["anomalies"]),
        "baselines": baseline_table(metrics.get("baselines"), metrics["noise"]),
        "generalisation": generalisation_table(metrics.get("generalisation"), metrics["noise"]),
        "comparison": comparison_table(metrics.get("comparison")),
        "finished_stages": finished_stages(provenance),
    }


def model_origin(training_metrics: dict, provenance: dict | None) -> dict:
    """Where the run's model and figures came from: `kind` names the sentence to show
    ("reused_run", "untracked", "reused_model", "retrain", "first", "changed")."""
    decision = training_metrics.get("cache")
    notebook = (provenance or {}).get("notebook") or {}
    if notebook.get("reused_from"):
        kind = "reused_run"
    elif decision is None:
        kind = "untracked"
    elif not decision["trained"]:
        kind = "reused_model"
    elif decision["reason"] in ("retrain", "first"):
        kind = decision["reason"]
    else:
        kind = "changed"
    return {
        "kind": kind,
        "reused_run": notebook.get("reused_from"),
        "cache": decision,
        "resumed_from_epoch": (decision or {}).get("resumed_from_epoch") or None,
    }


def finished_stages(provenance: dict | None) -> list[dict]:
    """Appendix B: the build's stages that had finished when the report was written (the html
    and pdf stages are still running then; run.json records them)."""
    stages = (provenance or {}).get("stages", {})
    return [{"name": name, **times} for name, times in stages.items() if "seconds" in times]


def dataset(dataset_metrics: dict) -> dict:
    """Section 1: how many images this run uses of those available, and the class counts."""
    total = sum(row["count"] for row in dataset_metrics["class_counts"])
    train_images, test_images = dataset_metrics["train_shape"][0], dataset_metrics["test_shape"][0]
    return {
        "train_images": train_images,
        "test_images": test_images,
        "subset": train_images < dataset_metrics["available"]["train"],
        "class_counts": [
            {**row, "share": row["count"] / total} for row in dataset_metrics["class_counts"]
        ],
        "class_total": total,
    }


def training(training_metrics: dict) -> dict:
    """Section 6: time per epoch and the last epoch's losses."""
    return {
        "seconds_per_epoch": training_metrics["seconds"] / training_metrics["epochs"],
        "final_loss": training_metrics["loss"][-1],
        "final_val_loss": training_metrics["val_loss"][-1],
    }


def anomaly_table(anomalies: dict) -> dict:
    """Section 8: the classes holding anomalous images, most first, and the figure's images."""
    return {
        "found": anomalies["count"] > 0,
        "by_class": _most_anomalous(anomalies),
        "shown_names": [image["name"] for image in anomalies["images"][:ANOMALIES_SHOWN]],
    }


def _most_anomalous(anomalies: dict) -> list[dict]:
    """Classes with at least one anomalous test image, most first (ties keep label order)."""
    found = [row for row in anomalies["by_class"] if row["count"] > 0]
    return sorted(found, key=lambda row: row["count"], reverse=True)


def baseline_table(baselines: dict | None, noise: dict) -> dict | None:
    """Section 10.1: the classical filters, best PSNR first; None when the study is off."""
    if not baselines:
        return None
    return {
        "rows": [
            {**row, "milliseconds_per_image": row["seconds_per_image"] * MILLISECONDS}
            for row in _by_psnr(baselines["rows"])
        ],
        "black_level": black_level(noise["std"]),
    }


def black_level(std: float) -> float:
    """What a black pixel averages once the noise is clipped to [0, 1] (the bias the corrected
    filters undo): pipeline.baselines.clipped_mean at 0."""
    from pipeline.baselines import clipped_mean  # SciPy: only when there are baselines

    return float(clipped_mean(0.0, std))


def _by_psnr(rows: list[dict]) -> list[dict]:
    """Best PSNR of the mean MSE first (ties keep their order)."""
    return sorted(rows, key=lambda row: row["psnr_of_mean_mse"], reverse=True)


def generalisation_table(generalisation: dict | None, noise: dict) -> dict | None:
    """Section 10.2: each noise, marked where it is the one the model was trained on."""
    if not generalisation:
        return None
    return {
        "rows": [
            {**row, "trained_on": row["kind"] == "gaussian" and row["value"] == noise["std"]}
            for row in generalisation["rows"]
        ]
    }


def comparison_table(comparison: dict | None) -> dict | None:
    """Appendix A: pipeline.gate's rows (each with its verdict), the relative change in %."""
    if not comparison:
        return None
    rows = []
    for row in comparison["rows"]:
        relative = row["relative_change"]
        rows.append(
            {**row, "relative_change_percent": None if relative is None else relative * 100}
        )
    return {"baseline": comparison["baseline"], "rows": rows}


# --- The answers to the lab's questions (templates/answers.html.j2) ---


def answers(metrics: dict) -> dict:
    """Each answer's verdicts and the numbers it derives, by the answer's macro name."""
    return {
        "noise": noise_answer(metrics["noise"]),
        "overfitting": overfitting_answer(metrics["training"]["overfitting"]),
        "details": details_answer(metrics["error_analysis"]),
        "residual": residual_answer(metrics["error_analysis"]["residual"], metrics["noise"]),
        "blur": blur_answer(metrics["error_analysis"]),
        "anomalies": anomalies_answer(metrics["anomalies"]),
        "baselines": baselines_answer(metrics.get("baselines"), metrics["reconstruction"]),
        "generalisation": generalisation_answer(metrics.get("generalisation")),
    }


def noise_answer(noise: dict) -> dict:
    """Lab §3: whether the noise carries more power than the image itself."""
    return {"noise_stronger_than_image": noise["effect"]["snr_db"] < 0}


def overfitting_answer(overfitting: dict) -> dict:
    """Lab §6: `verdict` is "overfit", "still_improving" or "within_tolerance" (the decision
    pipeline.evaluate recorded); whether validation ends at or below training."""
    if overfitting["overfit"]:
        verdict = "overfit"
    elif overfitting["still_improving"]:
        verdict = "still_improving"
    else:
        verdict = "within_tolerance"
    return {"verdict": verdict, "validation_not_above_training": overfitting["final_gap"] <= 0}


def details_answer(error_analysis: dict) -> dict:
    """Lab §7, details: classes ranked by SSIM, and whether even the worst keeps its shape."""
    ranked = sorted(error_analysis["per_class"], key=lambda row: row["ssim"], reverse=True)
    return {
        "best_classes": ranked[:CLASSES_NAMED],
        "worst_classes": ranked[::-1][:CLASSES_NAMED],  # the worst first
        "silhouette_ssim": SILHOUETTE_SSIM,
        "all_keep_silhouette": ranked[-1]["ssim"] >= SILHOUETTE_SSIM,
        "best_image": error_analysis["extremes"]["best"][0],
        "worst_image": error_analysis["extremes"]["worst"][0],
    }


def residual_answer(residual: dict, noise: dict) -> dict:
    """Lab §7, persisting noise: how much of the spread is removed, whether what is left is
    structured, and whether the background keeps a grey veil."""
    return {
        "removed": 1 - residual["std"] / noise["effect"]["added_std"],
        "structured": residual["neighbour_correlation"] > STRUCTURED_CORRELATION,
        "edge_to_flat": residual["edge_mean_abs"] / residual["flat_mean_abs"],
        "background_veil": residual["background_mean"] > BACKGROUND_VEIL,
    }


def blur_answer(error_analysis: dict) -> dict:
    """Lab §7, blur: whether the reconstructions keep less edge energy than the threshold, how
    many classes are below it, and the most blurred of those (a few, most blurred first)."""
    threshold = error_analysis["blur_threshold"]
    below = [row for row in error_analysis["per_class"] if row["sharpness"] < threshold]
    return {
        "blurred": error_analysis["sharpness"] < threshold,
        "classes": len(error_analysis["per_class"]),
        "classes_below": len(below),
        "blurred_classes": sorted(below, key=lambda row: row["sharpness"])[:CLASSES_NAMED],
    }


def anomalies_answer(anomalies: dict) -> dict:
    """Lab §8: where the anomalies concentrate and whether they are the detailed images."""
    most = _most_anomalous(anomalies)
    return {
        "percentile": int(round(anomalies["quantile"] * 100)),
        "found": bool(most),
        "top_classes": most[:CLASSES_NAMED],
        "concentrated": bool(most)
        and most[0]["share_of_class"] > CONCENTRATION_FACTOR * anomalies["share"],
        "detailed": anomalies["edge_ratio"] > DETAILED_EDGE_RATIO,
    }


def baselines_answer(baselines: dict | None, reconstruction: dict) -> dict | None:
    """Section 10.1: the best classical filter against the model, and what undoing the clipping
    bias changes on average (None without a corrected variant)."""
    if not baselines:
        return None
    from pipeline.baselines import best as best_row  # SciPy: only when there are baselines

    rows = baselines["rows"]
    best = best_row(rows)
    model_psnr = reconstruction["psnr_of_mean_mse"]
    as_is = [row["psnr_of_mean_mse"] for row in rows if row["variant"] == "as_is"]
    corrected = [row["psnr_of_mean_mse"] for row in rows if row["variant"] == "corrected"]
    return {
        "best": best,
        "model_wins": model_psnr > best["psnr_of_mean_mse"],
        "margin": abs(model_psnr - best["psnr_of_mean_mse"]),  # dB ahead, or behind
        "correction_gain": (
            sum(corrected) / len(corrected) - sum(as_is) / len(as_is) if corrected else None
        ),
    }


def generalisation_answer(generalisation: dict | None) -> dict | None:
    """Section 10.2: the Gaussian levels where the model beats the classical filter ("all",
    "some" or "none"), whether it harms the least noisy input, and each other noise."""
    if not generalisation:
        return None
    rows = generalisation["rows"]
    gaussian = [row for row in rows if row["kind"] == "gaussian"]
    wins = [row["value"] for row in gaussian if row["model"]["psnr"] > row["baseline"]["psnr"]]
    if len(wins) == len(gaussian):
        model_wins = "all"
    elif wins:
        model_wins = "some"
    else:
        model_wins = "none"
    least = gaussian[0]
    return {
        "model_wins": model_wins,
        "range": (gaussian[0]["value"], gaussian[-1]["value"]),
        "wins_range": (min(wins), max(wins)) if wins else None,
        "least_noise": least,
        "harms_least_noise": least["model"]["psnr"] < least["input"]["psnr"],
        "other_noises": [
            {**row, "improves": row["model"]["psnr"] > row["input"]["psnr"]}
            for row in rows
            if row["kind"] != "gaussian"
        ],
    }


# --- `dae-report compare` (templates/compare.html.j2) ---


def comparison(metrics: dict) -> dict:
    """The models ranked by PSNR, the best against the target and the lab's model, and the
    fixed-versus-random noise table when a model was trained on random levels."""
    ranked = _by_psnr(metrics["models"])
    best = ranked[0]
    lab = next((row for row in metrics["models"] if row["name"] == "lab"), None)
    return {
        "best": best,
        "reaches_target": best["psnr_of_mean_mse"] >= metrics["target_psnr_db"],
        "lab": lab,
        "gain_over_lab": best["psnr_of_mean_mse"] - lab["psnr_of_mean_mse"] if lab else None,
        "ranked": [
            {
                **row,
                "is_best": row is best,
                "milliseconds_per_image": row["seconds_per_image"] * MILLISECONDS,
            }
            for row in ranked
        ],
        "recipes": [{**row, "has_width": row["model"] != "lab"} for row in metrics["models"]],
        "random_levels": random_levels(metrics["models"]),
    }


def random_levels(models: list[dict]) -> dict | None:
    """The first model trained on random noise levels beside the same model on the fixed level:
    PSNR at each level of their curves. None when no model was."""
    randomised = next((row for row in models if row.get("std_range")), None)
    if randomised is None:
        return None
    fixed = next(row for row in models if row["name"] == randomised["model"])
    return {
        "std_range": randomised["std_range"],
        "points": [
            {"std": point["std"], "fixed": point["psnr"], "random": other["psnr"]}
            for point, other in zip(fixed["curve"], randomised["curve"], strict=True)
        ],
    }


# --- `dae-report batch`: the class set's index (templates/batch.html.j2) ---

BATCH_FILES = (  # what a built variant's row links to, in this order
    artifacts.REPORT_HTML,
    artifacts.REPORT_PDF,
    artifacts.ANSWER_KEY,
    artifacts.HANDOUT_NOTEBOOK,
)
FAILED_FILES = (artifacts.FAILURE_HTML, artifacts.FAILURE_LOG)


def batch(record: dict, folder: Path) -> dict:
    """batch.json as the index shows it: counts, the varying settings as columns, each variant's
    links (only files that exist, relative to the batch folder) and every student's row."""
    variants = record["variants"]
    rows = []
    for variant in variants:
        names = FAILED_FILES if variant["status"] == "failed" else BATCH_FILES
        run = variant["run"]
        files = [f"{run}/{name}" for name in names if run and (folder / run / name).is_file()]
        rows.append({**variant, "files": files})
    statuses = [variant["status"] for variant in variants]
    return {
        "vary": list(record["vary"]),
        "rows": rows,
        "failed": [row for row in rows if row["status"] == "failed"],
        "students": [
            {**student, "variant": variant["name"], "status": variant["status"]}
            for variant in variants
            for student in variant["students"]
        ],
        "counts": {status: statuses.count(status) for status in ("built", "regressed", "failed")},
    }
