"""The build's hands inside the lab notebook: the cells tagged `harness`, which no reader sees.

The lab's cells are plain NumPy and Keras. Three harness cells connect them to the build:

- `start(globals())` after the imports: TensorFlow's deterministic ops, the run's settings;
- `before_training(model)` before §6: the model's `fit` gains per-epoch progress on the terminal,
  its batches (the lab's PyDataset) through tf.data, which trains faster on the same batches,
  the model cache (a model trained before on the same inputs is loaded, not trained again) and
  resuming an interrupted build from its last finished epoch; its `compile`, XLA where the
  build chose it; and the precision the model was built in (lab §0 sets Keras' policy);
- `finish(globals())` at the end: collects what the lab produced and hands it to
  pipeline.analysis, which computes every metric and figure of the report.

The build passes its settings as JSON in $DAE_REPORT_HARNESS (pipeline.notebook.harness_settings).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path

from pipeline import analysis, artifacts, cache, environment, i18n, train
from pipeline.config import Config
from pipeline.notebook import SETTINGS_ENV
from pipeline.progress import report

# What start() learnt and before_training() produced, for finish(): one run per kernel.
_run: dict = {}


def start(namespace: dict) -> None:
    """Seed Keras with the lab's SEED and make TensorFlow's ops deterministic."""
    values = json.loads(os.environ[SETTINGS_ENV])
    config = Config.from_dict(values["config"])
    environment.seed_everything(namespace.get("SEED", config.seed))
    _run.clear()
    _run.update(values, config=config, environment=environment.versions_and_devices(), memory={})
    environment.reset_peak_rss()  # the kernel's own peaks, stage by stage, from here


def before_training(model) -> None:
    """Wrap `model.compile` and `model.fit`, so the lab's own calls train through
    pipeline.train.fit, with XLA when training.jit_compile asks for it (a speed setting, not
    the lab's)."""
    jit_compile = _run["jit_compile"]["used"]  # the build resolved "auto" on this machine
    model_cache = None
    if _run["cache_dir"] is not None:
        inputs = _run["training_inputs"]
        model_cache = cache.ModelCache(
            Path(_run["cache_dir"]), inputs, _run["run_id"], _run["retrain"]
        )
    config: Config = _run["config"]
    environment.stage_peak(_run["memory"], "sections 1-5")  # loading, noise, split, model
    _run["precision"] = {**_run["precision"], "policy": model.dtype_policy.name}
    if model.dtype_policy.name == "mixed_bfloat16" and not _native_bfloat16():
        report(
            "warning: bfloat16 without native support here (no GPU that TensorFlow sees, no "
            "AVX512_BF16/AMX): training is several times slower; training.precision = float32",
            echo=False,
        )
    lab_compile, lab_fit = model.compile, model.fit

    @functools.wraps(lab_compile)
    def compile(*args, **kwargs):
        with environment.xla_allowed(jit_compile):
            return lab_compile(*args, **{"jit_compile": jit_compile, **kwargs})

    @functools.wraps(lab_fit)
    def fit(*args, **kwargs):
        import keras

        call = inspect.signature(lab_fit).bind(*args, **kwargs).arguments

        def run_fit(callbacks, **feed):  # feed: the lab's PyDataset through tf.data (train.Feed)
            ours = list(call.get("callbacks") or []) + callbacks
            return lab_fit(**{**call, **feed, "callbacks": ours})

        images, epochs = call["x"], call.get("epochs", 1)  # Keras' default, as the 32 below
        dataset = images if isinstance(images, keras.utils.PyDataset) else None
        if dataset is not None:  # the lab's batches (§6)
            count, batch_size = train.dataset_size(dataset)
            train.announce(count, epochs, batch_size)
        else:
            train.announce(len(images), epochs, call.get("batch_size") or 32)
        history = train.fit(
            model, run_fit, config, jit_compile, cache=model_cache, echo=False, dataset=dataset
        )
        _run["history"] = history
        environment.trim_memory(from_now_on=True)  # the kernel trains no more
        if history.get("cache", {}).get("trained") is False:
            _ = i18n.gettext(config.report.lang)
            print(
                _(
                    "Modelo reutilizado de la ejecución {run}: "
                    "nada de lo que decide el entrenamiento ha cambiado."
                ).format(run=history["cache"]["reused_from"])
            )
        # What the lab's code reads: history.history["loss"], ["val_loss"].
        keras_history = keras.callbacks.History()
        keras_history.history = {key: history[key] for key in ("loss", "val_loss")}
        keras_history.epoch = list(range(len(history["loss"])))
        return keras_history

    model.compile, model.fit = compile, fit


def finish(namespace: dict) -> None:
    """Collect the lab's outputs, analyse them, and write metrics.json and model.keras."""
    config: Config = _run["config"]
    environment.stage_peak(_run["memory"], "training and sections 6-8")
    outputs = analysis.LabOutputs.collect(namespace, config.training.batch_size)
    report("analysis: metrics and figures from the notebook's arrays", echo=False)
    seconds: dict[str, float] = {}
    metrics = {
        "environment": {
            **_run["environment"],
            "seed": config.seed,
            "precision": _run["precision"],
            # as the build chose them, and whether this kernel's TensorFlow has them on
            "onednn": {**_run["onednn"], "active": environment.onednn_active()},
            "jit_compile": _run["jit_compile"],
        },
        **analysis.analyse(outputs, config, _run["history"], Path(artifacts.FIGURES), seconds),
    }
    metrics["dataset"] = {**_run["dataset"], **metrics["dataset"]}
    environment.stage_peak(_run["memory"], "analysis")
    metrics["resources"] = {**environment.resources(_run["memory"]), "analysis_seconds": seconds}
    namespace[analysis.MODEL].save(artifacts.MODEL)
    artifacts.write_json(Path(artifacts.METRICS), metrics)


def _native_bfloat16() -> bool:
    """Whether TensorFlow trains on a GPU here or the CPU computes bfloat16 natively."""
    if _run["environment"]["gpus"]:
        return True
    return any(flag in environment.cpu_flags() for flag in environment.BF16_CPU_FLAGS)
