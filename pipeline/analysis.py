"""Everything the report says, computed from what the lab notebook produced.

The notebook is the lab in plain code; its harness hands over the arrays, the Keras history and
the model as `LabOutputs`. `analyse` turns them into the metrics (metrics.json's schema lives
here) and draws the report's figures. The numbers come from pipeline.evaluate, the pictures
from pipeline.figures, the studies beyond the lab from pipeline.baselines and robustness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import baselines, data, evaluate, figures, i18n, robustness
from pipeline import model as lab_model
from pipeline.config import Config, loss_for
from pipeline.errors import RunError

# The notebook's names for what it produces, as the lab names them.
ARRAYS = (
    "x_train",
    "y_train",
    "x_sample",
    "x_sample_noisy",
    "x_val_clean",
    "x_val_noisy",
    "x_test",
    "y_test",
    "x_test_noisy",
    "x_test_denoised",
)
MODEL = "denoising_autoencoder"


@dataclass(frozen=True)
class LabOutputs:
    """What one execution of the lab produced. Images are float32 in [0, 1], (N, 28, 28, 1),
    but x_train: the lab keeps it uint8 and normalises each training batch (§2, §6)."""

    x_train: np.ndarray  # the training images as loaded, uint8 (N, 28, 28), before the split
    y_train: np.ndarray  # (N,) labels 0-9
    x_sample: np.ndarray  # §3: the first training images, normalised, to show the noise on
    x_sample_noisy: np.ndarray  # ... with the training noise (drawn afresh per batch in §6)
    x_val_clean: np.ndarray  # the first VAL_FRACTION of x_train
    x_val_noisy: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_test_noisy: np.ndarray
    x_test_denoised: np.ndarray  # the model's reconstructions of x_test_noisy
    predict: Callable[[np.ndarray], np.ndarray]  # the trained model, for images it has not seen
    model_summary: dict  # pipeline.model.architecture of the trained model

    @classmethod
    def collect(cls, namespace: dict, batch_size: int) -> LabOutputs:
        """Read the lab's variables from the notebook's namespace; a missing one is a RunError
        naming it (a cell that was edited or emptied)."""
        missing = [name for name in (*ARRAYS, MODEL) if name not in namespace]
        if missing:
            raise RunError(f"the lab notebook did not define {', '.join(missing)}")
        model = namespace[MODEL]
        values = {name: np.asarray(namespace[name]) for name in ARRAYS}
        return cls(
            **values,
            predict=lambda images: model.predict(images, batch_size=batch_size, verbose=0),
            model_summary=lab_model.architecture(model),
        )


def analyse(
    outputs: LabOutputs,
    config: Config,
    history: dict,
    figures_dir: Path,
    seconds: dict[str, float] | None = None,
) -> dict:
    """The run's metrics (all but environment, provenance and the gate's comparison), with the
    report's figures drawn into `figures_dir`. `seconds`, if given, receives what each part
    took (lab §1–§6, §7–§8, baselines, generalisation): the build's stage breakdown."""
    _ = i18n.gettext(config.report.lang)
    draw = Figures(figures_dir, _)
    seconds = {} if seconds is None else seconds
    clock = _Clock(seconds)
    metrics = {
        "dataset": explore(outputs, draw),
        "normalised": {
            "train": normalised_range(outputs.x_train),
            "test": evaluate.value_range(outputs.x_test),
        },
        "noise": noise_summary(outputs, config, draw),
        "split": {
            "val_fraction": config.split.val_fraction,
            "train": len(outputs.x_train) - len(outputs.x_val_clean),
            "validation": len(outputs.x_val_clean),
            "test": len(outputs.x_test),
        },
        "model": outputs.model_summary,
        "training": training_summary(history, config, draw),
    }
    clock.lap("lab §1-§6")
    mse_per_image = evaluate.per_image_mse(outputs.x_test, outputs.x_test_denoised)
    metrics["error_analysis"], edges_clean, ssim_per_image = error_analysis(
        outputs, mse_per_image, draw
    )
    metrics["reconstruction"] = evaluate.reconstruction(
        mse_per_image, ssim_per_image, evaluate.scores(outputs.x_test, outputs.x_test_noisy)
    )
    figures.histograms(
        [mse_per_image],
        draw.folder,
        "mse_histogram",
        text={"x": _("MSE por imagen"), "y": _("Frecuencia")},
    )
    metrics["anomalies"] = anomalies(outputs, mse_per_image, edges_clean, draw)
    clock.lap("lab §7-§8")
    metrics.update(beyond_the_lab(outputs, config, draw, clock))
    return metrics


class _Clock:
    """Seconds since the last lap, recorded under each lap's name."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.started = seconds, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self.started, 3)
        self.started = now


@dataclass(frozen=True)
class Figures:
    """Where the report's figures go, and the language of their labels."""

    folder: Path
    _: Callable[[str], str]


def explore(outputs: LabOutputs, draw: Figures) -> dict:
    """Lab §1: shapes, classes and the raw 0-255 pixel values."""
    _ = draw._
    raw_train = outputs.x_train
    class_counts = evaluate.class_counts(outputs.y_train)
    names = [data.CLASS_NAMES[label] for label in outputs.y_train[:9]]
    figures.image_grid([raw_train[:9]], names, draw.folder, "samples", columns=3)
    figures.bar_chart(
        [row["name"] for row in class_counts],
        [row["count"] for row in class_counts],
        draw.folder,
        "class_distribution",
        text={"y": _("Imágenes")},
    )
    figures.histograms(
        [raw_train],
        draw.folder,
        "pixel_histogram",
        text={"x": _("Valor de píxel (0-255)"), "y": _("Frecuencia")},
    )
    figures.image_grid(
        [data.to_unit_float(outputs.x_train[:6])],
        [data.CLASS_NAMES[y] for y in outputs.y_train[:6]],
        draw.folder,
        "normalised_samples",
        columns=3,
    )
    return {
        "train_shape": list(raw_train.shape),
        "test_shape": list(outputs.x_test.shape[:3]),
        "class_counts": class_counts,
        "pixels": evaluate.value_range(raw_train),
    }


def normalised_range(raw: np.ndarray) -> dict[str, float]:
    """`evaluate.value_range` of raw / 255 (lab §2), from the uint8 images: no float copy."""
    return {key: value / 255.0 for key, value in evaluate.value_range(raw).items()}


def noise_summary(outputs: LabOutputs, config: Config, draw: Figures) -> dict:
    """Lab §3: the noise asked for, and what it did to the training images."""
    _ = draw._
    figures.image_grid(
        [outputs.x_sample[:8], outputs.x_sample_noisy[:8]],
        [_("Original"), _("Ruidosa")],
        draw.folder,
        "clean_vs_noisy",
    )
    figures.histograms(
        [outputs.x_sample, outputs.x_sample_noisy],
        draw.folder,
        "noise_histogram",
        text={"x": _("Valor de píxel (0-1)"), "y": _("Frecuencia")},
        labels=[_("Limpias (x_sample)"), _("Con ruido (x_sample_noisy)")],
    )
    settings = config.noise
    return {
        "type": settings.type,
        "mean": settings.mean,
        "std": settings.std,
        "std_range": settings.std_range,
        "sample": len(outputs.x_sample),
        "train_noisy": evaluate.value_range(outputs.x_sample_noisy),
        "test_noisy": evaluate.value_range(outputs.x_test_noisy),
        "effect": evaluate.noise_effect(outputs.x_sample, outputs.x_sample_noisy),
    }


def training_summary(history: dict, config: Config, draw: Figures) -> dict:
    """Lab §6: the training settings, the per-epoch losses and the overfitting verdict."""
    _ = draw._
    figures.loss_curves(
        history,
        draw.folder,
        text={
            "train": _("Pérdida de entrenamiento"),
            "val": _("Pérdida de validación"),
            "x": _("Época"),
            "y": _("Pérdida ({loss})").format(
                loss=loss_for(config.model.name, config.training.loss)
            ),
        },
    )
    settings = config.training
    return {
        "optimizer": "Adam",
        "loss_function": loss_for(config.model.name, settings.loss),
        "schedule": settings.schedule,
        "learning_rate": settings.learning_rate,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        **history,
        "overfitting": evaluate.overfitting(history["loss"], history["val_loss"]),
    }


def error_analysis(outputs: LabOutputs, mse_per_image: np.ndarray, draw: Figures):
    """Lab §7: per-class MSE, PSNR, SSIM and sharpness; best and worst images; residuals.
    Returns the metrics, the clean images' edge energy and the per-image SSIM (for §8)."""
    _ = draw._
    x_test, denoised, labels = outputs.x_test, outputs.x_test_denoised, outputs.y_test
    figures.image_grid(
        [x_test[:10], outputs.x_test_noisy[:10], denoised[:10]],
        [_("Limpia"), _("Ruidosa"), _("Reconstruida")],
        draw.folder,
        "denoising_grid",
    )
    ssim_per_image = evaluate.ssim_per_image(x_test, denoised)
    edges_clean = evaluate.gradient_energy(x_test)
    edges_denoised = evaluate.gradient_energy(denoised)
    residual_maps, residual_stats = evaluate.residuals(x_test, denoised, labels)
    extremes = evaluate.extremes(mse_per_image, labels)
    best = [item["index"] for item in extremes["best"]]
    worst = [item["index"] for item in extremes["worst"]]
    figures.image_grid(
        [x_test[best], denoised[best], x_test[worst], denoised[worst]],
        [_("Mejores: limpia"), _("Reconstruida"), _("Peores: limpia"), _("Reconstruida")],
        draw.folder,
        "extremes",
    )
    figures.signed_maps(
        residual_maps,
        data.CLASS_NAMES,
        draw.folder,
        "residual_maps",
        text={"scale": _("Residuo medio (reconstruida − limpia)")},
    )
    metrics = {
        "per_class": evaluate.per_class(
            labels, mse_per_image, ssim_per_image, edges_clean, edges_denoised
        ),
        "extremes": extremes,
        "residual": residual_stats,
        "sharpness": float(edges_denoised.sum() / edges_clean.sum()),
        "blur_threshold": evaluate.BLUR_THRESHOLD,
    }
    return metrics, edges_clean, ssim_per_image


def anomalies(
    outputs: LabOutputs, mse_per_image: np.ndarray, edges_clean: np.ndarray, draw: Figures
) -> dict:
    """Lab §8 note: test images above the 99th percentile of the validation MSE (never test's)."""
    _ = draw._
    val_denoised = outputs.predict(outputs.x_val_noisy)
    found = evaluate.anomalies(
        evaluate.per_image_mse(outputs.x_val_clean, val_denoised),
        mse_per_image,
        outputs.y_test,
        edges_clean,
    )
    shown = [item["index"] for item in found["images"][: evaluate.ANOMALIES_SHOWN]]
    if shown:
        figures.image_grid(
            [outputs.x_test[shown], outputs.x_test_denoised[shown]],
            [_("Anómala: limpia"), _("Reconstruida")],
            draw.folder,
            "anomalies",
        )
    return found


def method_names(_: Callable[[str], str]) -> dict[str, str]:
    """The classical methods' names in the report's language."""
    return {
        "gaussian": _("Filtro gaussiano"),
        "median": _("Filtro de mediana"),
        "tv_chambolle": _("Variación total"),
        "wavelet": _("Wavelet"),
        "nl_means": _("Medias no locales"),
        "bm3d": "BM3D",
    }


def beyond_the_lab(outputs: LabOutputs, config: Config, draw: Figures, clock: _Clock) -> dict:
    """Lab §9 asks for PSNR, other noise and other methods: classical filters on the same test
    images (each parameter chosen on validation images), and noise the model never saw."""
    _, names = draw._, method_names(draw._)
    settings, found = config.evaluation, {}
    selection = slice(0, settings.selection_images)
    val_clean, val_noisy = outputs.x_val_clean[selection], outputs.x_val_noisy[selection]
    x_test, x_test_noisy = outputs.x_test, outputs.x_test_noisy
    # The generalisation study's classical method: the best of the comparison, or without one,
    # total variation.
    method = baselines.method("tv_chambolle")
    if settings.baselines:
        rows, examples = baselines.run(
            (val_clean, val_noisy), (x_test, x_test_noisy), config.noise.std
        )
        found["baselines"] = {
            "selection_images": len(val_clean),
            "rows": rows,
            "bm3d_installed": baselines.bm3d_available(),
        }
        method = baselines.method(baselines.best(rows)["method"])
        shown = {
            row["method"]: row["variant"]
            for row in sorted(rows, key=lambda row: row["psnr_of_mean_mse"])
        }
        figures.image_grid(
            [x_test[:6], x_test_noisy[:6], outputs.x_test_denoised[:6]]
            + [examples[f"{name}/{variant}"] for name, variant in shown.items()],
            [_("Limpia"), _("Ruidosa"), _("Autoencoder")] + [names[name] for name in shown],
            draw.folder,
            "baselines",
        )
        clock.lap("baselines")
    if settings.generalisation:
        subset = slice(0, settings.generalisation_images)
        rows = robustness.study(outputs.predict, val_clean, x_test[subset], method, config.seed)
        found["generalisation"] = {"images": len(x_test[subset]), "rows": rows}
        gaussian = [row for row in rows if row["kind"] == "gaussian"]
        figures.curves(
            [row["value"] for row in gaussian],
            {
                _("Autoencoder"): [row["model"]["psnr"] for row in gaussian],
                names[method.name]: [row["baseline"]["psnr"] for row in gaussian],
                _("Entrada ruidosa"): [row["input"]["psnr"] for row in gaussian],
            },
            draw.folder,
            "generalisation",
            text={"x": _("Desviación típica del ruido gaussiano"), "y": "PSNR (dB)"},
            marker=config.noise.std,
        )
        clock.lap("generalisation")
    return found
