"""`dae-report batch`: the LocalCluster's size, handout names, the progress line, the index, and
a real class of six built on a LocalCluster from the command line."""

import csv
import io
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from pypdf import PdfReader

from pipeline import artifacts, batch, config, variants, view
from pipeline.roster import Student
from tests.conftest import SUBSET_DIR, TINY, dae_report

TINY_SETTINGS = TINY[3::2]  # the --set values: data.train_limit=600, …


@pytest.mark.parametrize(
    "cores, memory_gib, jobs, expected",
    [
        (2, 24, 6, (1, 2)),  # this machine: one training at a time, both cores
        (16, 128, 8, (8, 2)),
        (16, 8, 8, (2, 8)),  # memory for two trainings only: fewer, wider workers
        (64, 512, 3, (3, 21)),  # never more workers than jobs
        (1, 1, 4, (1, 1)),
    ],
)
def test_the_local_cluster_fits_cores_memory_and_jobs(cores, memory_gib, jobs, expected):
    assert batch.cluster_size(cores, memory_gib * 2**30, jobs) == expected


def test_handout_names_never_collide_even_on_a_case_blind_file_system():
    ids = ["ana.garcia", "a/b", "a_b", "S1", "s1", "..", "ñandú 7", "x" * 200]
    names = batch.handout_names([Student(i, i) for i in ids])
    assert names["ana.garcia"] == "ana.garcia.ipynb"  # a safe id is its own file name
    assert names["a_b"] == "a_b.ipynb"
    assert re.fullmatch(r"a_b-[0-9a-f]{8}\.ipynb", names["a/b"])
    folded = [name.casefold() for name in names.values()]
    assert len(set(folded)) == len(ids)
    for name in names.values():
        assert re.fullmatch(r"[\w.-]+\.ipynb", name) and not name.startswith(".")
        assert "/" not in name and len(name) < 100


def test_the_progress_line_counts_built_running_failed_and_left_with_an_eta():
    log = io.StringIO()  # not a terminal: one line per change, no carriage returns
    with batch.ClassProgress(log, 3) as progress:
        progress.running(2)
        progress.running(2)  # nothing changed: no line
        progress.done(batch.Outcome("v1", "/x"))
        progress.done(batch.Outcome("v2", None, "data.train_limit = 99999 > 4000"))
        progress.running(1)
        progress.done(batch.Outcome("v3", "/y"))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("variants: 0 built, 0 running, 0 failed, 3 left")
    assert lines[1].startswith("variants: 0 built, 2 running, 0 failed, 1 left")
    assert "  v2 failed: data.train_limit = 99999 > 4000" in lines
    assert any(line.startswith("variants: 1 built, 1 running, 1 failed, 0 left") for line in lines)
    assert lines[-1].startswith("variants: 2 built, 0 running, 1 failed, 0 left")
    assert all("elapsed, ETA" in line for line in lines if line.startswith("variants:"))
    assert len(lines) == len(set(lines))


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.links


def test_the_index_lists_built_and_failed_variants_with_their_files_and_errors(tmp_path):
    """The index from a batch.json with a built and a failed variant, in English."""
    built, failed = tmp_path / "variants/v1/run-a", tmp_path / "variants/v2/run-b"
    for folder, names in ((built, view.BATCH_FILES), (failed, ["failure.html"])):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("x")
    (tmp_path / batch.CLASS_CSV).write_text("id\n")
    (tmp_path / "handouts").mkdir()
    (tmp_path / "handouts/s1.ipynb").write_text("{}")
    headlines = {
        "mse_mean": 0.0123,
        "mse_median": 0.011,
        "psnr_db": 19.1,
        "ssim_mean": 0.71,
        "final_val_loss": 0.29,
    }
    student = {"id": "s1", "name": "Ana", "group": "A", "handout": "s1.ipynb"}
    record = {
        "assignment": "dae-test",
        "profile": "quick",
        "vary": {"noise.std": [0.3, 0.5]},
        "set": {},
        "started": "2026-11-27T15:00:00+00:00",
        "seconds": 754.0,
        "lang": "en",
        "variants": [
            {
                "name": "v1",
                "settings": {"noise.std": 0.3},
                "status": "built",
                "error": None,
                "run": "variants/v1/run-a",
                "headlines": headlines,
                "students": [student],
            },
            {
                "name": "v2",
                "settings": {"noise.std": 0.5},
                "status": "failed",
                "error": "stage notebook: the kernel died",
                "run": "variants/v2/run-b",
                "headlines": None,
                "students": [{**student, "id": "s2", "name": "Bo", "handout": None}],
            },
        ],
    }
    (tmp_path / batch.RECORD).write_text(json.dumps(record), encoding="utf-8")
    batch.write_index(tmp_path, record)
    html = (tmp_path / batch.INDEX_HTML).read_text(encoding="utf-8")
    for link in links_of(html):
        if not link.startswith("#"):
            assert (tmp_path / link).is_file(), link
    assert set(links_of(html)) >= {
        "variants/v1/run-a/report.pdf",
        "variants/v1/run-a/answer-key.ipynb",
        "variants/v2/run-b/failure.html",
        "handouts/s1.ipynb",
        "class.csv",
    }
    assert "0.0123" in html and "19.10" in html and "stage notebook: the kernel died" in html
    assert "Failed variants" in html and "students without a handout: 1" in html
    pages = PdfReader(tmp_path / batch.INDEX_PDF).pages
    for number, page in enumerate(pages, start=1):
        text = page.extract_text()
        assert "Answer key: do not distribute" in text, number
        assert f"{number} / {len(pages)}" in text


def secret_drawing_every_value(assignment, ids) -> str:
    """A course secret for which these students draw every combination (found, not assumed)."""
    wanted = len(assignment.combinations())
    for attempt in range(100):
        secret = f"course-secret-{attempt}"
        drawn = {repr(variants.draw(assignment, i, secret.encode())) for i in ids}
        if len(drawn) == wanted:
            return secret
    raise AssertionError("no secret in 100 draws every combination")


@pytest.mark.slow
def test_a_class_of_six_with_three_variants_builds_three_models_and_six_handouts(tmp_path):
    """As an instructor types it: relative paths, from the folder that holds the roster."""
    ids = [f"alu{n:02d}" for n in range(6)]
    (tmp_path / "roster.csv").write_text(
        "id;name;group\n" + "".join(f"{i};Alumno {n}, {i};A\n" for n, i in enumerate(ids)),
        encoding="utf-8-sig",  # a Spanish LMS export: semicolons and a byte-order mark
    )
    (tmp_path / "VARIANTS.toml").write_text(
        'assignment = "dae-test"\nprofile = "quick"\n[vary]\n"noise.std" = [0.3, 0.4, 0.5]\n'
        "[set]\n" + "".join(f'"{key}" = {value}\n' for key, value in map(split, TINY_SETTINGS))
    )
    secret = secret_drawing_every_value(variants.load(tmp_path / "VARIANTS.toml"), ids)
    result = dae_report(
        *("batch", "roster.csv", "--variants", "VARIANTS.toml", "--data-dir", str(SUBSET_DIR)),
        cwd=tmp_path,
        env={"DAE_COURSE_SECRET": secret},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "reports" / "dae-test"
    assert "variants: 3 built, 0 running, 0 failed, 0 left" in result.stderr + result.stdout

    rows = list(csv.DictReader((folder / batch.CLASS_CSV).open(encoding="utf-8")))
    assert [row["id"] for row in rows] == ids
    assert {row["noise.std"] for row in rows} == {"0.3", "0.4", "0.5"}
    assert {row["status"] for row in rows} == {"built"}
    assert all(0 < float(row["mse_mean"]) < 1 for row in rows)
    # Three models: one per variant, each with its own result, shared by its students.
    by_variant = {(row["variant"], row["mse_mean"]) for row in rows}
    assert len(by_variant) == len({variant for variant, _ in by_variant}) == 3

    record = json.loads((folder / batch.RECORD).read_text(encoding="utf-8"))
    assert [variant["name"] for variant in record["variants"]] == ["v1", "v2", "v3"]
    for variant in record["variants"]:  # three models: each variant trained its own
        run_dir = folder / variant["run"]
        run = json.loads((run_dir / artifacts.RUN_RECORD).read_text(encoding="utf-8"))
        assert run["notebook"]["reused_from"] is None
        answers = nbformat.read(run_dir / artifacts.ANSWER_KEY, as_version=4)
        assert answers.cells[0].source == "**⚠ Solucionario: no distribuir**"
        pages = PdfReader(run_dir / artifacts.REPORT_PDF).pages
        assert all("Solucionario: no distribuir" in page.extract_text() for page in pages)
        handout = (run_dir / artifacts.HANDOUT_NOTEBOOK).read_text(encoding="utf-8")
        assert "no distribuir" not in handout

    for row in rows:
        handout = nbformat.read(folder / batch.HANDOUTS / row["handout"], as_version=4)
        assert handout.metadata["dae_report"]["student"] == row["id"]
        assert handout.metadata["dae_report"]["settings"] == {"noise.std": float(row["noise.std"])}
        assert f"noise.std = {row['noise.std']}" in handout.cells[0].source

    html = (folder / batch.INDEX_HTML).read_text(encoding="utf-8")
    assert all(f">{i}<" in html for i in ids)
    for link in links_of(html):
        assert link.startswith("#") or (folder / link).is_file(), link
    assert PdfReader(folder / batch.INDEX_PDF).pages


@pytest.mark.parametrize(
    "roster, variants_text, env, message",
    [
        ("id,name\ns1,Ana\n", 'assignment = "a"\n', {}, "no course secret: set DAE_COURSE_SECRET"),
        (
            "id,name\ns1,Ana\ns1,Bo\n",
            'assignment = "a"\n',
            {"DAE_COURSE_SECRET": "k"},
            "row 3: id 's1' again (first in row 2)",
        ),
        (
            "id,name\ns1,Ana\n",
            'assignment = "a"\nprofile = "quick"\n[vary]\n"data.train_limit" = [600, 99999]\n',
            {"DAE_COURSE_SECRET": "k"},
            "variant v2 (data.train_limit = 99999): ",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_built(
    tmp_path, roster, variants_text, env, message
):
    (tmp_path / "roster.csv").write_text(roster, encoding="utf-8")
    (tmp_path / "V.toml").write_text(variants_text, encoding="utf-8")
    result = dae_report(
        *("batch", "roster.csv", "--variants", "V.toml", "--data-dir", str(SUBSET_DIR)),
        cwd=tmp_path,
        env={"DAE_COURSE_SECRET": "", **env},
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "reports").exists()


def split(setting: str) -> tuple[str, str]:
    key, value = setting.split("=", 1)
    return key, value


@pytest.mark.slow
def test_variants_build_on_a_local_cluster_and_bad_input_is_reported_not_retried(tmp_path):
    jobs = {
        name: (
            config.load_config("quick", overrides=[*TINY_SETTINGS, f"noise.std={std}"]),
            tmp_path / name,
        )
        for name, std in (("std-0.3", 0.3),)
    }
    # Passes the config check, fails on the data: returned as the job's error, not raised.
    jobs["too-many"] = (
        config.load_config("quick", overrides=["data.train_limit=99999"]),
        tmp_path / "x",
    )
    done = []
    outcomes = batch.run(jobs, data_dir=SUBSET_DIR, on_done=done.append)
    assert [outcome.name for outcome in outcomes] == ["std-0.3", "too-many"]
    assert sorted(outcome.name for outcome in done) == ["std-0.3", "too-many"]
    assert outcomes[0].error is None, outcomes[0].error
    assert (Path(outcomes[0].run_dir) / "report.pdf").is_file()
    assert "data.train_limit = 99999" in outcomes[1].error


def test_a_job_gives_tensorflow_its_share_of_the_cores_not_the_nannys_one(monkeypatch):
    """Dask's nanny sets OMP_NUM_THREADS=1 and the kernel would inherit it."""
    from types import SimpleNamespace

    from pipeline import build

    seen = {}

    def fake_build(**_arguments):
        seen.update({name: os.environ[name] for name in batch.THREAD_VARIABLES})
        return SimpleNamespace(run_dir=Path("/runs/x"))

    monkeypatch.setattr(build, "build", fake_build)
    for name in batch.THREAD_VARIABLES:
        monkeypatch.setenv(name, "1")
    assert batch.build_job("v1", None, "/f", None, 4) == batch.Outcome("v1", "/runs/x")
    assert seen == dict.fromkeys(batch.THREAD_VARIABLES, "4")
    # On an existing cluster: the worker's threads over the trainings it runs at once.
    worker = SimpleNamespace(state=SimpleNamespace(nthreads=8, total_resources={"train": 2}))
    monkeypatch.setattr("distributed.get_worker", lambda: worker)
    batch.build_job("v1", None, "/f", None, None)
    assert seen == dict.fromkeys(batch.THREAD_VARIABLES, "4")


def test_a_cluster_whose_workers_lack_the_train_resource_is_bad_input_not_a_hang():
    from types import SimpleNamespace

    from pipeline.errors import BadInput

    def client(*resources):
        workers = {f"tcp://w{n}": {"resources": r} for n, r in enumerate(resources)}
        return SimpleNamespace(scheduler_info=lambda: {"workers": workers})

    with pytest.raises(
        BadInput, match=r"start each worker with `dask worker tcp://s:8786 --resources train=1`"
    ):
        batch._check_workers(client({}, {"GPU": 1}), "tcp://s:8786")
    batch._check_workers(client({}, {"train": 1}), "tcp://s:8786")  # one is enough
    batch._check_workers(client(), "tcp://s:8786")  # none yet: an adaptive cluster, waited for
