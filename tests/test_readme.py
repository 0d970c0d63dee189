"""The README's layout table names every module of the package, one row each, with its job."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `(?P<module>[a-z_0-9]+)` \| (?P<job>.+) \|$")


def layout_table() -> dict[str, str]:
    """{module: job} from the rows of the README's `| module | job |` table."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| module | job |")
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match, f"a layout row names one module in backticks, then its job: {line!r}"
        assert match["module"] not in rows, f"{match['module']} has two rows"
        rows[match["module"]] = match["job"].strip()
    return rows


def test_the_layout_table_lists_every_module_and_no_other():
    modules = {
        path.stem for path in (ROOT / "pipeline").glob("*.py") if not path.stem.startswith("__")
    }
    listed = set(layout_table())
    assert listed - modules == set(), "rows for modules that do not exist"
    assert modules - listed == set(), "modules the README's layout table does not list"


def test_each_job_is_one_line_of_words():
    for module, job in layout_table().items():
        assert len(job.split()) >= 3, f"{module}: say what its job is"
        assert len(job) <= 160, f"{module}: one line, not a paragraph"
