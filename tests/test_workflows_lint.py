"""The delivery pipeline, checked by the tools that check it: the workflows by actionlint (with shellcheck on every
`run:` step) and zizmor (pinned actions, no injectable `${{ }}` in `run:`, least permissions), every YAML file by
yamllint, the Prometheus rules by promtool; and each linter shown to fail on a file that is wrong. The workflows'
`dog-breed` commands are parsed by the real CLI parser, so a renamed flag breaks a test here, not a run on GitHub."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, installed_tool

WORKFLOWS = REPO/".github"/"workflows"


def run_tool(name: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    exe = installed_tool(name)
    if exe is None: pytest.skip(f"{name} is not installed (pip install -e '.[lint]')")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd)


def test_the_six_workflows_exist_with_least_permissions():
    names = sorted(p.name for p in WORKFLOWS.glob("*.yaml"))
    assert names == ["data.yaml", "docs.yaml", "image.yaml", "model.yaml", "relock.yaml", "test.yaml"]
    for p in WORKFLOWS.glob("*.yaml"):
        wf = yaml.safe_load(p.read_text())
        assert wf["permissions"] == {"contents": "read"}, p.name   # wider only per job, where needed (docs: pages)
    relock = yaml.safe_load((WORKFLOWS/"relock.yaml").read_text())["jobs"]["relock"]
    assert relock["permissions"] == {"contents": "write", "pull-requests": "write"}   # push a branch, open its PR


def test_workflows_pass_actionlint():
    if shutil.which("shellcheck") is None: pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = run_tool("actionlint", "-no-color", "-oneline")
    assert res.returncode == 0, res.stdout + res.stderr


def test_workflows_pass_zizmor():
    res = run_tool("zizmor", "--offline", "--no-progress", "--format", "plain", str(WORKFLOWS))
    assert res.returncode == 0, res.stdout + res.stderr


def test_yaml_passes_yamllint():
    res = run_tool("yamllint", "--strict", "-f", "parsable", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_rules_pass_promtool():
    exe = shutil.which("promtool")
    if exe is None: pytest.skip("promtool is not installed (apt-get install prometheus)")
    res = subprocess.run([exe, "check", "rules", str(REPO/"deploy"/"prometheus"/"alerts.yml")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_alerts_fire_when_they_should():
    "promtool's unit tests of the rules (deploy/prometheus/alerts_test.yml): the live-accuracy alert and its non-cases."
    exe = shutil.which("promtool")
    if exe is None: pytest.skip("promtool is not installed (apt-get install prometheus)")
    res = subprocess.run([exe, "test", "rules", str(REPO/"deploy"/"prometheus"/"alerts_test.yml")], capture_output=True, text=True)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


BAD_WORKFLOW = """\
name: bad
on:
  issues:
    types: [opened]
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.issue.title }}"
      - run: echo "${{ github.evnt_name }}"
"""


def test_the_linters_catch_a_bad_workflow(tmp_path):
    "An outdated unpinned action, an issue title injected into a shell, a misspelt context, no permissions: each tool objects."
    (tmp_path/".github"/"workflows").mkdir(parents=True)
    (tmp_path/".github"/"workflows"/"bad.yaml").write_text(BAD_WORKFLOW)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    res = run_tool("actionlint", "-no-color", "-oneline", cwd=tmp_path)
    for finding in ['"evnt_name" is not defined', '"github.event.issue.title" is potentially untrusted', 'runtime "node20"']:
        assert res.returncode == 1 and finding in res.stdout, (finding, res.stdout)
    res = run_tool("zizmor", "--offline", "--no-progress", "--format", "plain", str(tmp_path/".github"/"workflows"))
    assert res.returncode != 0
    for audit in ["template-injection", "unpinned-uses", "excessive-permissions"]: assert audit in res.stdout, (audit, res.stdout)
    (tmp_path/"params.yaml").write_text("train:\n  epochs: 2\n  epochs: 3\n")
    res = run_tool("yamllint", "--strict", "-f", "parsable", "-c", str(REPO/".yamllint.yaml"), "params.yaml", cwd=tmp_path)
    assert res.returncode == 1 and "duplication of key" in res.stdout, res.stdout


def workflow_commands() -> list[tuple[str, str]]:
    "Every `dog-breed …` command line in the workflows' run steps, with its file."
    found = []
    for p in WORKFLOWS.glob("*.yaml"):
        for job in yaml.safe_load(p.read_text())["jobs"].values():
            for step in job["steps"]:
                script = step.get("run", "").replace("\\\n", " ")
                found += [(p.name, m.group(0)) for m in re.finditer(r"dog-breed [^\n|;&]+", script)]
    return found


def test_workflow_commands_parse():
    "The data and model checks the workflows run are real sub-commands with real flags (variables filled in)."
    from dog_breed_classifier.cli import build_parser
    commands = workflow_commands()
    assert {c.split()[1] for _, c in commands} >= {"data-report", "check-model"}
    parser = build_parser()
    for name, line in commands:
        argv = [re.sub(r"\$\{?\w+\}?", "X", a) for a in shlex.split(line)[1:]]
        try: parser.parse_args(argv)
        except SystemExit as e:
            if e.code != 0: pytest.fail(f"{name}: `{line}` does not parse")


def test_secrets_only_by_name():
    "Secrets reach steps through env only: never inside a run script, never a literal value."
    for p in WORKFLOWS.glob("*.yaml"):
        for job in yaml.safe_load(p.read_text())["jobs"].values():
            for step in job["steps"]:
                assert "secrets." not in step.get("run", ""), (p.name, step.get("name"))
