import json
import shutil

from pipeline import provenance
from tests.conftest import RUN_SAMPLE_DIR


def _run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    shutil.copy(RUN_SAMPLE_DIR / "metrics.json", run / "metrics.json")
    shutil.copy(RUN_SAMPLE_DIR / "config.json", run / "config.json")
    (run / "figures" / "loss_curves.svg").write_text("<svg/>")
    return run


def _edit_metrics(run, change):
    metrics = json.loads((run / "metrics.json").read_text())
    change(metrics)
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_content_digest_ignores_times_and_run_identity(tmp_path):
    run = _run_folder(tmp_path)
    before = provenance.content_digest(run)
    _edit_metrics(run, lambda m: m["training"].update(seconds=999.0, epoch_seconds=[1.0, 2.0],
                                                      cache={"reused_from": "other-run"}))  # fmt: skip
    assert provenance.content_digest(run) == before


def test_content_digest_follows_results_and_figures(tmp_path):
    run = _run_folder(tmp_path)
    before = provenance.content_digest(run)
    _edit_metrics(run, lambda m: m["evaluation"]["mse"].update(mean=0.5))
    after_metric = provenance.content_digest(run)
    assert after_metric != before
    (run / "figures" / "loss_curves.svg").write_text("<svg></svg>")
    assert provenance.content_digest(run) != after_metric


def test_versions_are_read_from_package_metadata():
    versions = provenance.versions()
    assert versions["tensorflow"] and versions["weasyprint"] and versions["python"]


def test_git_commit_of_this_checkout_or_none(tmp_path):
    found = provenance.git_commit()
    assert found is None or (len(found["commit"]) == 40 and isinstance(found["dirty"], bool))
    assert provenance.git_commit(tmp_path) is None
