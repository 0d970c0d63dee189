"""`dae-report compare`: train several denoisers on the same data and compare them.

Every model sees the same images, the same noise and the same split as the lab; each trains
with its own recipe (TRAINING_RECIPES) through the model cache, so a model an earlier
comparison trained is reused (a build trains in the notebook, under keys of its own). The
comparison report shows a table (parameters, training time, MSE / PSNR / SSIM), the validation
curves together, the same test images through each model, and each model's PSNR across noise
levels.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import (
    artifacts,
    cache,
    data,
    environment,
    evaluate,
    figures,
    i18n,
    index,
    noise,
    notebook,
    report,
)
from pipeline.config import Config, ModelConfig
from pipeline.progress import StderrInto, format_duration
from pipeline.run import Run, cover_warnings

# The training settings of each model in a comparison (the lab's model keeps the config's,
# which are the lab's). Epochs are set so each trains within the lab's CPU time (20 lab
# epochs), measured on the same machine (README, "Beyond the lab").
TRAINING_RECIPES = {
    "lab": {},
    "residual": {
        "loss": "mse",
        "schedule": "cosine",
        "learning_rate": 2e-3,
        "batch_size": 128,
        "epochs": 4,
        "jit_compile": "auto",
    },
    "unet": {
        "loss": "mse",
        "schedule": "cosine",
        "learning_rate": 2e-3,
        "batch_size": 64,
        "epochs": 12,
        "jit_compile": "auto",
    },
}
MODEL_WIDTHS = {"lab": 32, "residual": 32, "unet": 16}  # base channels (the lab's ignores it)
CURVE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # Gaussian noise std of the PSNR curves
# The PSNR (dB) at std 0.4 that the best offered model is measured against in the report.
TARGET_PSNR_DB = 21.0


# Lab §3 shows its training noise on the first images of the training set; drawing it moves the
# generator, so `prepare` draws it too (and drops it) to give validation the notebook's noise.
NOISE_SAMPLE = 2000


@dataclass(frozen=True)
class Prepared:
    """The lab's arrays: the training images as uint8 (N, 28, 28), whose batches `train.Batches`
    makes, and float32 (N, 28, 28, 1) (clean, noisy) pairs for validation and test."""

    train: np.ndarray
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    test_labels: np.ndarray
    digests: dict[str, str]


def prepare(config: Config, dataset: data.Dataset) -> Prepared:
    """What the lab notebook does before training (§1–§4), as one function, drawing from one
    generator in the notebook's order: test noise, §3's sample, validation noise."""
    train_images, _ = data.limit(
        dataset.train_images, dataset.train_labels, config.data.train_limit, "train"
    )
    test_images, test_labels = data.limit(
        dataset.test_images, dataset.test_labels, config.data.test_limit, "test"
    )
    x_test = data.to_unit_float(test_images)
    rng = np.random.default_rng(config.seed)
    x_test_noisy = noise.corrupt(x_test, config.noise, rng)
    noise.corrupt(data.to_unit_float(train_images[:NOISE_SAMPLE]), config.noise, rng, training=True)
    val_size = data.validation_size(len(train_images), config.split.val_fraction)
    x_val = data.to_unit_float(train_images[:val_size])
    x_val_noisy = noise.corrupt(x_val, config.noise, rng, training=True)
    return Prepared(
        train_images[val_size:],
        (x_val, x_val_noisy),
        (x_test, x_test_noisy),
        test_labels,
        dataset.digests,
    )


def variant(config: Config, name: str, std_range: tuple[float, float] | None = None) -> Config:
    """The config that trains model `name` with its recipe (and, optionally, random levels)."""
    recipe = dict(TRAINING_RECIPES[name])
    if config.profile != "full":  # recipes' epochs are for the full data; quick keeps its own
        recipe.pop("epochs", None)
    training = dataclasses.replace(config.training, **recipe)
    noise_config = (
        dataclasses.replace(config.noise, std_range=std_range) if std_range else config.noise
    )
    return dataclasses.replace(
        config,
        model=ModelConfig(name=name, width=MODEL_WIDTHS[name]),
        training=training,
        noise=noise_config,
    )


def compare_models(
    *,
    config: Config,
    models: list[str],
    out_dir: Path,
    data_dir: Path | None = None,
    std_range: tuple[float, float] | None = None,
    stream=None,
) -> Path:
    """Train (or reuse) each model, evaluate all on the same test images, write the report."""
    entries = [(name, None) for name in models] + ([(models[0], std_range)] if std_range else [])
    for name, levels in entries:  # a recipe the config cannot take is bad input, before any work
        variant(config, name, levels)
    run = Run("compare", config, out_dir, stream, stage_count=len(entries) + 3)
    cover_warnings(config, run.stages.warn)  # the comparison report has the same cover
    with run.stages.run("data") as stage:
        folder = data.locate(data_dir)
        dataset = data.load(folder)
        stage.detail = f"{folder} (verified)"
    try:
        with run.open("compare") as run_dir:
            # TensorFlow runs in this process: from its import on, what it writes to stderr goes
            # to the run's kernel.log, as a build's kernel's does; the stages still reach the
            # terminal.
            with StderrInto(run_dir / artifacts.KERNEL_LOG, keep=run.stream):
                results, examples = model_stages(run, entries, dataset)
                test_clean = figures_stage(run, dataset, results, examples)
                metrics = comparison_metrics(run.config, results, len(test_clean))
                artifacts.write_json(run_dir / artifacts.METRICS, metrics)
                report_stage(run)
        run.finish()
    finally:
        if run.folder is not None and run.folder.is_dir():  # listed however it ended, as builds
            index.refresh(run.out_dir, run.stream)
    return run_dir


def model_stages(run: Run, entries: list[tuple], dataset: data.Dataset) -> tuple[list, dict]:
    """One stage per model: train it (or reuse it from the cache), then evaluate it. Returns
    each model's row of the comparison and its first eight denoised test images, by label."""
    from pipeline import environment

    # This process trains every model, and TensorFlow reads oneDNN's setting once, at import:
    # one choice for all of them, the first model's, made before anything imports it.
    first = variant(run.config, *entries[0])
    onednn = environment.choose_onednn(
        first.training.onednn,
        first.model.name,
        first.model.width,
        first.training.batch_size,
    )
    onednn = environment.apply_onednn(onednn)
    environment.seed_everything(run.config.seed)
    results, examples = [], {}
    for name, levels in entries:
        label = f"{name}+std_range" if levels else name
        with run.stages.run(label, f"training {label}") as stage:
            row, denoised = train_and_evaluate(run, label, name, levels, dataset, onednn)
            results.append(row)
            examples[label] = denoised[:8]
            seconds = format_duration(row["training_seconds"])
            stage.detail = f"{label}: {row['psnr_of_mean_mse']:.2f} dB in {seconds}"
    return results, examples


def train_and_evaluate(
    run: Run,
    label: str,
    name: str,
    levels: tuple[float, float] | None,
    dataset: data.Dataset,
    onednn: dict,
) -> tuple[dict, np.ndarray]:
    """Model `name` trained with its recipe (on noise levels drawn in `levels`, if given) and
    scored on the test images; returns its row and its denoised test images (N, 28, 28, 1).
    `onednn`: the choice in force in this process (environment.apply_onednn)."""
    import keras

    from pipeline import train
    from pipeline.config import loss_for
    from pipeline.model import architecture
    from pipeline.model import build as build_model

    config = run.config
    settings = variant(config, name, levels)
    arrays = prepare(settings, dataset)  # random levels change the training noise
    cache_root = run.out_dir / cache.CACHE_DIR
    machine = environment.machine_choices(settings, stream=run.stream, onednn=onednn)
    keras.mixed_precision.set_global_policy(notebook.policy(machine["precision"]["used"]))
    keras.utils.set_random_seed(settings.seed)
    model = build_model(settings.model.name, settings.model.width)
    model_cache = cache.ModelCache(
        cache_root,
        cache.training_inputs(settings.to_dict(), arrays.digests, machine),
        run.folder.name,
    )
    jit_compile = machine["jit_compile"]["used"]
    history = train.train(model, arrays.train, arrays.val, settings, jit_compile, model_cache)
    test_clean, test_noisy = arrays.test
    started = time.perf_counter()
    denoised = model.predict(test_noisy, batch_size=256, verbose=0)
    seconds_per_image = (time.perf_counter() - started) / len(test_noisy)
    curve = _curve(model, test_clean[: config.evaluation.generalisation_images], config.seed)
    row = {
        "name": label,
        "model": name,
        "std_range": levels,
        "recipe": {
            **dataclasses.asdict(settings.training),
            "width": settings.model.width,
            "loss": loss_for(name, settings.training.loss),
        },
        "parameters": architecture(model)["parameters"],
        "machine": machine,  # precision, oneDNN and XLA, as chosen for this machine, and why
        "history": history,
        "training_seconds": history["seconds"],
        "seconds_per_image": seconds_per_image,
        **evaluate.scores(test_clean, denoised),
        "curve": curve,
    }
    return row, denoised


def figures_stage(run: Run, dataset: data.Dataset, results: list, examples: dict) -> np.ndarray:
    """The validation curves together, the same test images through each model, and each
    model's PSNR across noise levels; returns the clean test images (N, 28, 28, 1)."""
    config, figures_dir = run.config, run.folder / artifacts.FIGURES
    _ = i18n.gettext(config.report.lang)
    with run.stages.run("figures"):
        figures.loss_curves_many(
            {row["name"]: row["history"] for row in results},
            figures_dir,
            text={"x": _("Época"), "y": _("MSE de validación")},
        )
        test_clean, test_noisy = prepare(config, dataset).test
        figures.image_grid(
            [test_clean[:8], test_noisy[:8], *examples.values()],
            [_("Limpia"), _("Ruidosa"), *examples],
            figures_dir,
            "models",
        )
        figures.curves(
            list(CURVE_LEVELS),
            {row["name"]: [point["psnr"] for point in row["curve"]] for row in results},
            figures_dir,
            "models_generalisation",
            text={"x": _("Desviación típica del ruido gaussiano"), "y": "PSNR (dB)"},
            marker=config.noise.std,
        )
    return test_clean


def comparison_metrics(config: Config, results: list[dict], test_images: int) -> dict:
    """The comparison's metrics.json: each model's row, its history cut to the losses."""
    losses = ("loss", "val_loss", "mse", "val_mse")
    models = [
        {**row, "history": {key: row["history"][key] for key in losses if key in row["history"]}}
        for row in results
    ]
    return {
        "models": models,
        "noise": {"std": config.noise.std},
        "target_psnr_db": TARGET_PSNR_DB,
        "test_images": test_images,
        "curve_images": min(test_images, config.evaluation.generalisation_images),
    }


def report_stage(run: Run) -> None:
    """report.html and report.pdf (metrics.json attached) from compare.html.j2."""
    run_dir = run.folder
    with run.stages.run("report") as stage:
        values = report.context(run_dir, run_dir.name, run.started, provenance=run.record.as_dict())
        html = (
            report.environment(run.config.report.lang)
            .get_template("compare.html.j2")
            .render(values)
        )
        artifacts.write_text(run_dir / artifacts.REPORT_HTML, html)
        pages = report.write_pdf(
            html,
            run_dir / artifacts.REPORT_PDF,
            run_dir,
            [run_dir / artifacts.METRICS],
            run.started,
        )
        stage.detail = f"{artifacts.REPORT_HTML}, {artifacts.REPORT_PDF} ({pages} pages)"


def _curve(model, clean: np.ndarray, seed: int) -> list[dict]:
    """PSNR of the model on Gaussian noise at each level of CURVE_LEVELS."""
    points = []
    for level, std in enumerate(CURVE_LEVELS):
        noisy = noise.add_gaussian_noise(clean, 0.0, std, np.random.default_rng([seed, level]))
        denoised = model.predict(noisy, batch_size=256, verbose=0)
        mse = evaluate.per_image_mse(clean, denoised)
        points.append({"std": std, "psnr": evaluate.psnr_of_mean_mse(mse)})
    return points
