"""The lab notebook's own code cells, run in order with Keras 3 on JAX: its fidelity on a GPU
machine that has JAX but neither TensorFlow nor this package.

    KERAS_BACKEND=jax python benchmarks/gpu_notebook.py --data DIR --out DIR [--epochs 20]

Runs templates/lab.ipynb as the build would for the `full` profile (the Gaussian noise's and the
lab model's cells, not the variants'), without the harness cells. Two lines of §0 need
TensorFlow (its version, its GPU list): on JAX, a stand-in `tf` answers them. Writes
DIR/notebook-<tag>.json: the test MSE per image's statistics, the losses and the seconds.
On the GPU machine, put the wheels of benchmarks/gpu-kit/ on PYTHONPATH first, as its run.sh
does (pip install --no-index --no-deps --find-links wheels --target SITE keras ...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

NOTEBOOK = Path(__file__).resolve().parent.parent / "templates" / "lab.ipynb"
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class Nothing:
    """Stands in for matplotlib where it is not installed: every call does nothing."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __iter__(self):
        return iter(())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the Fashion-MNIST .gz files")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tag", default="float32")
    parser.add_argument("--limit", type=int, help="the first N training and test images only")
    arguments = parser.parse_args(argv)
    home = Path(arguments.out) / "keras-home"  # keras.datasets reads the files from its cache
    (home / "datasets" / "fashion-mnist").mkdir(parents=True, exist_ok=True)
    for name in FILES:
        link = home / "datasets" / "fashion-mnist" / name
        link.unlink(missing_ok=True)
        link.symlink_to(Path(arguments.data).resolve() / name)
    os.environ["KERAS_HOME"] = str(home)

    try:
        import matplotlib

        matplotlib.use("agg")
        import matplotlib.pyplot as plt

        plt.show = lambda: plt.close("all")
    except ImportError:  # the figures are not what this measures: draw nothing
        sys.modules["matplotlib"] = sys.modules["matplotlib.pyplot"] = Nothing()
    namespace = {"_": lambda text: text}
    if os.environ["KERAS_BACKEND"] == "jax":  # §0's `tf`, without TensorFlow (Keras checks for it)
        import jax

        namespace["tf"] = types.SimpleNamespace(
            __version__=f"none (JAX {jax.__version__})",
            config=types.SimpleNamespace(list_physical_devices=lambda kind: jax.devices()),
        )
    import keras

    seconds = {}
    for cell in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        variant = re.search(r"-\d$", cell["id"]) and not cell["id"].startswith("plt-")
        if cell["cell_type"] != "code" or "harness" in tags or variant:
            continue
        source = "".join(cell["source"])
        if "tf" in namespace:
            source = source.replace("import tensorflow as tf\n", "")
        if cell["id"] == "parameters":
            source += f"\nEPOCHS = {arguments.epochs}\n"
            if arguments.limit:
                source += f"TRAIN_LIMIT = TEST_LIMIT = {arguments.limit}\n"
        started = time.perf_counter()
        exec(compile(source, cell["id"], "exec"), namespace)
        seconds[cell["id"]] = round(time.perf_counter() - started, 3)
        print(f"{cell['id']}: {seconds[cell['id']]} s", flush=True)
    mse = namespace["mse_per_image"]
    history = namespace["history"].history
    result = {
        "backend": keras.config.backend(),
        "devices": [str(device) for device in jax.devices()] if "tf" in namespace else [],
        "epochs": arguments.epochs,
        "test_mse_mean": float(mse.mean()),
        "test_mse_median": float(sorted(mse)[len(mse) // 2]),
        "test_images": int(len(mse)),
        "loss": [float(value) for value in history["loss"]],
        "val_loss": [float(value) for value in history["val_loss"]],
        "cell_seconds": seconds,
    }
    out = Path(arguments.out) / f"notebook-{arguments.tag}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"test MSE mean {result['test_mse_mean']:.6f}, val_loss {result['val_loss'][-1]:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
