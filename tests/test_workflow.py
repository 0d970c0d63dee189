"""The scheduled-regeneration workflow is a valid GitHub Actions workflow that does its job."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).parent.parent / ".github" / "workflows" / "report.yml"


def _validate(path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True)


def test_workflow_matches_the_github_schema():
    result = _validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = yaml.safe_load(WORKFLOW.read_text())
    del broken["jobs"]["report"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert _validate(path).returncode != 0


def test_workflow_runs_on_schedule_installs_with_the_readme_command_and_gates():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    steps = workflow["jobs"]["report"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert "make report" in script  # the README's own command
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in steps)
    assert "exit ${{ steps.build.outputs.code }}" in script
    readme = (WORKFLOW.parents[2] / "README.md").read_text()
    assert "make report" in readme
