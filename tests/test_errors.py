"""Bad input, faults and interruptions: each ends in one line, the right exit code, and no
damage: no traceback, no half-written report marked `latest`, no earlier run touched.

The table is the contract; README "Exit codes" and the issue note list the same cases."""

import errno
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import cli
from tests.conftest import SUBSET_DIR


def _rewrite(path, transform):
    path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes()))))


IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


def _data(damage):
    """A setup step that damages one file of the data copy."""
    return lambda case: damage(case.data)


def _write(name, text):
    def setup(case):
        (case.tmp / name).mkdir() if text is None else (case.tmp / name).write_text(text)
    return setup


# (case, extra arguments, setup, exit code, message). {tmp} and {data} are filled in.
CASES = [
    # config and options
    ("unknown section", ["--set", "nosie.std=0.3"], None, 2, "unknown config key 'nosie'"),
    ("unknown key", ["--set", "noise.sdt=0.3"], None, 2, "unknown config key 'noise.sdt'"),
    ("wrong type", ["--set", "training.epochs=ten"], None, 2, "training.epochs must be an integer, got 'ten'"),
    ("negative std", ["--set", "noise.std=-0.1"], None, 2, "noise.std = -0.1 is out of range"),
    ("zero std", ["--set", "noise.std=0"], None, 2, "noise.std = 0.0 is out of range"),
    ("zero epochs", ["--set", "training.epochs=0"], None, 2, "training.epochs = 0 is out of range"),
    ("zero batch", ["--set", "training.batch_size=0"], None, 2, "training.batch_size = 0 is out of range"),
    ("val_fraction 0", ["--set", "split.val_fraction=0"], None, 2, "split.val_fraction = 0.0 is out of range"),
    ("val_fraction 1", ["--set", "split.val_fraction=1"], None, 2, "split.val_fraction = 1.0 is out of range"),
    ("limit larger than the data", ["--set", "data.train_limit=5000"], None, 2, "data.train_limit = 5000 but the train set has 4000 images"),
    ("unknown model", ["--set", "model.name=vgg"], None, 2, "model.name = 'vgg' is not one of: lab, residual, unet"),
    ("unknown noise type", ["--set", "noise.type=pink"], None, 2, "noise.type = 'pink' is not one of: gaussian, poisson, speckle, salt_pepper"),
    ("unknown language", ["--set", "report.lang=fr"], None, 2, "report.lang = 'fr' is not one of: es, en"),
    ("malformed TOML", ["--config", "{tmp}/bad.toml"], _write("bad.toml", "[training\nepochs = 3"), 2, "is not valid TOML"),
    ("missing --config file", ["--config", "{tmp}/none.toml"], None, 2, "config file not found"),
    ("--config is a folder", ["--config", "{tmp}/folder.toml"], _write("folder.toml", None), 2, "config file is a directory"),
    ("conflicting options", ["--lang", "en", "--set", "report.lang=es"], None, 2, "conflicting options: --lang en and --set report.lang=es"),
    ("logo that is not an image", ["--set", "report.logo={tmp}/logo.png"], _write("logo.png", "root:x:0:0"), 2, "is not a PNG, JPEG or SVG image"),
    # data
    ("missing file", [], _data(lambda d: (d / IMAGES).unlink()), 2, f"{IMAGES} is missing"),
    ("empty file", [], _data(lambda d: (d / IMAGES).write_bytes(b"")), 2, "is empty or too short"),
    ("truncated gzip", [], _data(lambda d: (d / IMAGES).write_bytes((d / IMAGES).read_bytes()[:50_000])), 2, "is truncated"),
    ("not gzip", [], _data(lambda d: (d / IMAGES).write_bytes(b"<html>not found</html>")), 2, "is not a valid gzip file"),
    ("wrong magic number", [], _data(lambda d: _rewrite(d / IMAGES, lambda r: b"\0\0\x08\x02" + r[4:])), 2, "magic number 0x00000802"),
    ("wrong image size", [], _data(lambda d: _rewrite(d / IMAGES, lambda r: r[:4] + struct.pack(">III", 4000, 28, 14) + r[16:16 + 4000 * 392])), 2, "images are (28, 14)"),
    ("label count != image count", [], _data(lambda d: _rewrite(d / LABELS, lambda r: r[:4] + struct.pack(">I", 3999) + r[8:-1])), 2, "4000 train images but 3999 labels"),
    ("label outside 0-9", [], _data(lambda d: _rewrite(d / LABELS, lambda r: r[:-1] + b"\x0c")), 2, "label 12 is outside 0-9"),
    ("digest mismatch", [], _data(lambda d: _rewrite(d / IMAGES, lambda r: r[:-1] + bytes([r[-1] ^ 1]))), 2, "does not match the published Fashion-MNIST"),
    ("data folder is a file", ["--data-dir", "{tmp}/file"], _write("file", ""), 2, "is a file, not a folder"),
    ("data folder unreadable", [], lambda case: case.patch("pipeline.data._readable", lambda folder: False), 2, "cannot be read (permission denied)"),
    # output
    ("--out is a file", ["--out", "{tmp}/out-file"], _write("out-file", ""), 2, "is a file, not a folder"),
    ("--out not writable", [], lambda case: case.patch("pipeline.build._writable", lambda folder: False), 2, "is not writable"),
    ("disk full", [], lambda case: case.patch("pipeline.artifacts.open", _disk_full, raising=False), 2, "No space left on device"),
]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Case:
    def __init__(self, tmp: Path, monkeypatch):
        self.tmp, self.data, self.out, self.patch = tmp, tmp / "data", tmp / "reports", monkeypatch.setattr

    def argv(self, extra):
        base = ["build", "--profile", "quick", "--data-dir", str(self.data), "--out", str(self.out)]
        return base + [arg.format(tmp=self.tmp, data=self.data) for arg in extra]


@pytest.mark.parametrize("name, extra, setup, code, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_leaves_nothing_finished(tmp_path, monkeypatch, capsys, name, extra, setup, code, message):
    import shutil

    shutil.copytree(SUBSET_DIR, tmp_path / "data")
    case = Case(tmp_path, monkeypatch)
    if setup:
        setup(case)
    assert cli.main(case.argv(extra)) == code
    error = capsys.readouterr().err.splitlines()
    assert error and error[-1].startswith("dae-report: error: ") and message in error[-1], error
    assert not any("Traceback" in line for line in error)
    assert not (case.out / "latest").exists()


def test_the_matrix_covers_at_least_25_cases():
    assert len(CASES) + len(RUN_FAULTS) >= 25


# --- faults while running: in the notebook kernel, or a signal from outside ---


def _build(out: Path, *extra: str, env=None) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipeline", "build", "--profile", "quick",
               "--data-dir", str(SUBSET_DIR), "--out", str(out), *extra]  # fmt: skip
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env or os.environ.copy(),
                            start_new_session=True)  # fmt: skip


def _newest_run(out: Path) -> Path:
    return max((p for p in out.glob("2*") if p.is_dir()), key=lambda p: p.stat().st_mtime)


def _wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _shim(tmp_path: Path, code: str) -> dict:
    """An environment whose Pythons first run `code`: a sitecustomize module, loaded by every
    Python that starts with it on PYTHONPATH, replaces a function to make a fault happen."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(code)
    return {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _inject(tmp_path: Path) -> dict:
    """Make the kernel fail inside a lab cell."""
    return _shim(tmp_path, "import pipeline.evaluate\n"
                           "def broken(*args, **kwargs):\n    raise RuntimeError('injected fault')\n"
                           "pipeline.evaluate.noise_effect = broken\n")  # fmt: skip


def _stall_pdf(tmp_path: Path, flag: Path) -> dict:
    """Hold WeasyPrint's layout until the test interrupts it: a PDF takes seconds, too short to
    hit reliably with a signal. The flag file says the PDF stage is running."""
    return _shim(tmp_path, "import time, weasyprint\n"
                           "render = weasyprint.HTML.render\n"
                           "def stalled(self, *args, **kwargs):\n"
                           f"    open({str(flag)!r}, 'w').close()\n"
                           "    time.sleep(120)\n"
                           "    return render(self, *args, **kwargs)\n"
                           "weasyprint.HTML.render = stalled\n")  # fmt: skip


RUN_FAULTS = ["nan loss", "exception in a notebook cell", "interrupted while training", "interrupted while rendering the PDF"]


def test_nan_loss_fails_the_run_with_exit_3(tmp_path):
    out = tmp_path / "reports"
    process = _build(out, "--set", "model.name=residual", "--set", "training.learning_rate=1e6",
                     "--set", "evaluation.baselines=false", "--set", "evaluation.generalisation=false")  # fmt: skip
    _, error = process.communicate(timeout=600)
    assert process.returncode == 3
    assert error.splitlines()[-1].startswith("dae-report: error: training diverged: the loss became")
    run = _newest_run(out)
    assert "stage: notebook" in (run / "failure.log").read_text() and (run / "failure.html").is_file()
    assert not (out / "latest").exists()


def test_exception_in_a_notebook_cell_exits_3_and_names_it(tmp_path):
    out = tmp_path / "reports"
    process = _build(out, env=_inject(tmp_path))
    _, error = process.communicate(timeout=600)
    assert process.returncode == 3
    assert "failed with RuntimeError: injected fault" in error.splitlines()[-1]
    assert "Traceback" not in error
    assert json.loads((_newest_run(out) / "run.json").read_text())["status"] == "failed"
    assert not (out / "latest").exists()


def test_interrupted_training_resumes_from_its_last_epoch(tmp_path):
    out = tmp_path / "reports"
    process = _build(out)
    _wait_for(lambda: any("1/2" in log.read_text() for log in out.glob("2*/build.log")))
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, error = process.communicate(timeout=120)
    assert process.returncode == 3 and error.splitlines()[-1] == "dae-report: interrupted"
    interrupted = _newest_run(out)
    assert "error: interrupted" in (interrupted / "failure.log").read_text()
    assert not (out / "latest").exists()

    again = _build(out)
    _, error = again.communicate(timeout=600)
    assert again.returncode == 0, error
    resumed = _newest_run(out)
    assert "resumed after epoch 1/2" in (resumed / "build.log").read_text()
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["training"]["cache"]["resumed_from_epoch"] == 1
    assert len(metrics["training"]["loss"]) == 2
    assert (out / "latest").resolve() == resumed.resolve()
    assert (interrupted / "failure.log").is_file()  # the earlier run is left as it was


def test_interrupted_pdf_leaves_no_pdf_and_latest_alone(tmp_path):
    out = tmp_path / "reports"
    first = _build(out)
    assert first.wait(timeout=600) == 0
    latest = (out / "latest").resolve()
    flag = tmp_path / "pdf-started"
    process = _build(out, env=_stall_pdf(tmp_path, flag))  # reuses the notebook: straight to the PDF
    _wait_for(flag.exists)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 3 and error.splitlines()[-1] == "dae-report: interrupted"
    run = _newest_run(out)
    assert "stage: pdf" in (run / "failure.log").read_text()
    assert not (run / "report.pdf").exists() and not list(run.glob(".report.pdf.*"))
    assert (out / "latest").resolve() == latest
