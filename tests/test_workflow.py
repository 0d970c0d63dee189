"""The scheduled-regeneration workflow is a valid GitHub Actions workflow that does its job,
and passes zizmor's security audit."""

import importlib.machinery
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "report.yml"
README = ROOT / "README.md"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def build_step(workflow_path: Path) -> tuple[str, dict]:
    """The workflow's build step (id `build`): its `run` script and its `env` mapping.

    The env values are the workflow's own strings (GitHub expressions included), so a caller
    that runs the script locally decides what each one stands for."""
    steps = _load(Path(workflow_path))["jobs"]["report"]["steps"]
    matches = [step for step in steps if step.get("id") == "build"]
    assert len(matches) == 1, f"expected one step with id 'build', found {len(matches)}"
    step = matches[0]
    return step["run"], dict(step.get("env") or {})


def _validate(path: Path) -> subprocess.CompletedProcess:
    schema = ["--builtin-schema", "vendor.github-workflows"]
    command = [sys.executable, "-m", "check_jsonschema", *schema, str(path)]
    return subprocess.run(command, capture_output=True, text=True, encoding="utf-8")


def _zizmor(path: Path) -> tuple[int, list[dict], str]:
    """zizmor --offline on one workflow file: exit code, findings (its JSON output), stderr."""
    # zizmor is a Rust binary that pip installs beside the interpreter; it has no `python -m`.
    executable = Path(sys.executable).parent / "zizmor"
    command = [str(executable), "--offline", "--no-progress", "--format", "json", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, encoding="utf-8")
    findings = json.loads(result.stdout) if result.stdout.strip() else []
    return result.returncode, findings, result.stderr


def _describe(findings: list[dict]) -> str:
    return "\n".join(
        f"{finding['ident']} ({finding['determinations']['severity']}): {finding['desc']} at "
        + ", ".join(
            f"line {location['concrete']['location']['start_point']['row'] + 1}"
            for location in finding["locations"]
        )
        for finding in findings
    )


def test_workflow_matches_the_github_schema():
    result = _validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = _load(WORKFLOW)
    del broken["jobs"]["report"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _validate(path).returncode != 0


def test_workflow_passes_the_zizmor_audit():
    code, findings, stderr = _zizmor(WORKFLOW)
    assert findings == [], _describe(findings)
    assert code == 0, stderr


def test_the_zizmor_audit_can_fail(tmp_path):
    text = WORKFLOW.read_text(encoding="utf-8")
    text, pins = re.subn(r"actions/checkout@[0-9a-f]{40}[^\n]*", "actions/checkout@v4", text)
    assert pins == 1
    # zizmor knows a `choice` input can only be one of its options, so `inputs.profile` inside
    # run: passes on its own; a step output there is a template injection.
    text = text.replace('PROFILE="$PROFILE"', 'PROFILE="${{ inputs.profile }}"')
    text = text.replace('exit "$CODE"', "exit ${{ steps.build.outputs.code }}")
    assert "${{ inputs.profile }}" in text and "exit ${{ steps.build.outputs.code }}" in text
    path = tmp_path / ".github" / "workflows" / "report.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    code, findings, stderr = _zizmor(path)
    assert code != 0, stderr
    rules = {finding["ident"] for finding in findings}
    assert {"unpinned-uses", "template-injection"} <= rules, _describe(findings)


def test_every_action_is_pinned_to_a_commit_with_its_version_noted():
    text = WORKFLOW.read_text(encoding="utf-8")
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", text, re.M)
    steps = [step for job in _load(WORKFLOW)["jobs"].values() for step in job["steps"]]
    assert len(uses) == len([step for step in steps if "uses" in step])  # every one, each job
    assert {ref.split("@")[0] for ref, _ in uses} == {
        "actions/checkout",
        "actions/setup-python",
        "actions/cache",
        "actions/upload-artifact",
        "actions/upload-pages-artifact",
        "actions/deploy-pages",
    }
    for ref, comment in uses:
        assert re.fullmatch(r"actions/[\w-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*#\s*v\d+\.\d+\.\d+", comment), (ref, comment)


def _readme_quick_start_commands() -> list[str]:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## Quick start", 1)
    assert len(section) == 2, "README has no '## Quick start' section"
    block = re.search(r"^```sh\n(.*?)^```", section[1], re.M | re.S)
    assert block, "no ```sh block after '## Quick start'"
    lines = (line.split("#", 1)[0].strip() for line in block.group(1).splitlines())
    return [line for line in lines if line]


def test_workflow_runs_on_schedule_builds_with_the_readme_command_and_gates():
    workflow = _load(WORKFLOW)
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    assert triggers["workflow_dispatch"]["inputs"]["profile"]["default"] == "full"

    assert _readme_quick_start_commands() == ["make report", "make test"]

    script, env = build_step(WORKFLOW)
    commands = [line.strip() for line in script.splitlines()]
    assert 'make report PROFILE="$PROFILE"' in commands, script
    expression = r"\$\{\{\s*inputs\.profile\s*\|\|\s*'(\w+)'\s*\}\}"
    default = re.fullmatch(expression, env.get("PROFILE", ""))
    assert default and default.group(1) == "full", env
    assert "${{" not in script  # expressions reach the script only through env

    steps = workflow["jobs"]["report"]["steps"]
    action = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}
    assert action["actions/checkout"]["with"]["persist-credentials"] is False
    upload = _uploads(steps)["${{ steps.build.outputs.run }}"]
    assert upload["with"]["if-no-files-found"] == "error"
    gate = steps[-1]
    assert gate["if"] == "steps.build.outputs.code != '0'"
    assert gate["env"] == {"CODE": "${{ steps.build.outputs.code }}"}
    assert 'exit "$CODE"' in gate["run"]


def _uploads(steps: list[dict]) -> dict[str, dict]:
    """The report job's actions/upload-artifact steps by the path each uploads."""
    return {
        step["with"]["path"]: step
        for step in steps
        if step.get("uses", "").startswith("actions/upload-artifact@")
    }


def test_the_build_step_names_the_artifact_it_is_uploaded_as():
    """The build's step summary names the artifact (DAE_REPORT_ARTIFACT): the name the run
    folder is uploaded under, not another."""
    _, env = build_step(WORKFLOW)
    steps = _load(WORKFLOW)["jobs"]["report"]["steps"]
    upload = _uploads(steps)["${{ steps.build.outputs.run }}"]
    assert (
        env["DAE_REPORT_ARTIFACT"]
        == upload["with"]["name"]
        == "lab-report-${{ github.run_number }}"
    )


def test_the_runs_index_is_uploaded_beside_the_run_folder():
    steps = _load(WORKFLOW)["jobs"]["report"]["steps"]
    uploads = _uploads(steps)
    run, index = uploads["${{ steps.build.outputs.run }}"], uploads["reports/index.html"]
    assert index["if"] == run["if"]  # whenever there is a run folder, failed runs included
    assert index["with"]["name"] != run["with"]["name"]


def test_pages_is_off_by_default_and_only_its_job_may_write():
    workflow = _load(WORKFLOW)
    triggers = workflow[True] if True in workflow else workflow["on"]
    publish = triggers["workflow_dispatch"]["inputs"]["publish_pages"]
    assert publish["type"] == "boolean" and publish["default"] is False
    assert workflow["permissions"] == {"contents": "read"}
    report, pages = workflow["jobs"]["report"], workflow["jobs"]["pages"]
    assert "permissions" not in report  # the workflow's read-only token
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert pages["needs"] == "report" and "inputs.publish_pages" in pages["if"]
    assert pages["environment"]["name"] == "github-pages"
    # the job holding write permissions runs one pinned action: no checkout, no script
    (deploy,) = pages["steps"]
    assert deploy["uses"].startswith("actions/deploy-pages@") and "run" not in deploy
    # only the index is published: a run folder holds the answer key
    upload = next(
        step
        for step in report["steps"]
        if step.get("uses", "").startswith("actions/upload-pages-artifact@")
    )
    assert "inputs.publish_pages" in upload["if"]
    staging = next(step for step in report["steps"] if step.get("name", "").startswith("Stage"))
    copies = [line.split() for line in staging["run"].splitlines() if line.startswith("cp ")]
    assert copies == [["cp", "reports/index.html", f"{upload['with']['path']}/index.html"]]


def test_the_zizmor_audit_refuses_pages_rights_for_the_whole_workflow(tmp_path):
    """Granted at the workflow level, pages: write and id-token: write would reach the build,
    which runs the repository's code: the audit must say so."""
    text = WORKFLOW.read_text(encoding="utf-8")
    text, count = re.subn(
        r"^permissions:\n  contents: read\n",
        "permissions:\n  contents: read\n  pages: write\n  id-token: write\n",
        text,
        flags=re.M,
    )
    assert count == 1
    path = tmp_path / ".github" / "workflows" / "report.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    code, findings, stderr = _zizmor(path)
    assert code != 0, stderr
    assert "excessive-permissions" in {finding["ident"] for finding in findings}


def _build_step_script():
    """.ci/workflow-build-step as a module (it has no .py suffix: it is run, not imported)."""
    path = ROOT / ".ci" / "workflow-build-step"
    loader = importlib.machinery.SourceFileLoader("workflow_build_step", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_local_build_step_evaluates_every_expression_of_its_env():
    """.ci/run runs the step with its env evaluated here: a new expression there needs a local
    stand-in, or the script stops."""
    script = _build_step_script()
    _, env = build_step(WORKFLOW)
    evaluated = {key: script.evaluate(value) for key, value in env.items()}
    assert evaluated["PROFILE"] == script.INPUTS["profile"]
    assert evaluated["DAE_REPORT_ARTIFACT"] == f"lab-report-{script.GITHUB['run_number']}"
    with pytest.raises(SystemExit, match="github.token"):
        script.evaluate("${{ github.token }}")


def test_the_local_build_step_checks_the_step_summary(tmp_path):
    """It requires the build's summary: none, an oversized one or one naming another artifact
    fails; the one pipeline.summary writes for a finished run passes."""
    from conftest import RUN_SAMPLE_DIR

    from pipeline import summary

    script = _build_step_script()
    run = tmp_path / "20261108-031700-quick"
    shutil.copytree(RUN_SAMPLE_DIR, run)
    (run / "run.json").write_text(
        json.dumps({"run_id": run.name, "profile": "quick", "status": "finished"}),
        encoding="utf-8",
    )
    text = summary.markdown(run, "lab-report-local").encode("utf-8")
    assert script.summary_failures(text, run.name, "lab-report-local") == []
    assert script.summary_failures(b"", run.name, "lab-report-local")
    assert script.summary_failures(text, run.name, "lab-report-other")
    assert script.summary_failures(text, "another-run", "lab-report-local")
    oversized = text + b"x" * summary.MAX_BYTES
    assert script.summary_failures(oversized, run.name, "lab-report-local")
