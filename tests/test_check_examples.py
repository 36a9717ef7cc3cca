"""The CI examples are valid workflow files, call perfsentinel check with flags it accepts, install Perf Sentinel
from its source, and their shell steps run here as written against a throw-away Prometheus (the steps that need
GitHub or GitLab themselves, k6 or the caller's deployment are skipped, and the tests say which)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from analyzer.commands.cli import parser
from analyzer.gate.reports import FILENAMES
from analyzer.gate.timewindows import rfc3339
from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus
from analyzer.synthetic import generate, inject_step
from tests.conftest import require_tools

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.mark.parametrize(
    ("name", "schema"), [("github-actions.yml", "vendor.github-workflows"), ("gitlab-ci.yml", "vendor.gitlab-ci")]
)
def test_example_validates_against_its_ci_schema(name, schema):
    tool = shutil.which("check-jsonschema")
    if tool is None:
        pytest.fail("check-jsonschema is missing: pip install -e '.[test]'")
    done = subprocess.run([tool, "--builtin-schema", schema, str(EXAMPLES / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_example_check_command_parses(name):
    text = (EXAMPLES / name).read_text()
    command = re.search(r"perfsentinel check (.*?)--report perf-report", text, re.S).group(0)
    command = re.sub(r"\$\{\{[^}]*\}\}|\$\([^)]*\)|\$\{?[A-Za-z_:0-9]*\}?", "X", command.replace("\\\n", " "))
    args = parser().parse_args(shlex.split(command)[1:])
    assert args.command == "check" and args.fail_on == "significant" and str(args.report) == "perf-report"
    assert args.events_query == "app_build_info" and args.baseline is None  # the default: the seasonal baseline


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_examples_install_from_the_repository_not_from_pypi(name):
    """'perfsentinel' on PyPI is another project: the templates install this one from its source."""
    text = (EXAMPLES / name).read_text()
    assert 'pip install "perfsentinel[reports] @ ${PERFSENTINEL_SOURCE}"' in text
    assert "PERFSENTINEL_SOURCE: " in text and "git+https://" in text
    assert 'pip install "perfsentinel[reports]"\n' not in text


# ---------------------------------------------------------------- the templates' shell steps, run here
GITHUB_SKIPPED = {
    "actions/checkout@v4": "uses: (checks out the caller's repository)",
    "actions/setup-python@v5": "uses: (Python is this machine's)",
    "grafana/setup-k6-action@v1": "uses: (no k6 here)",
    "Upload the report": "uses: actions/upload-artifact (uploads the report as an artifact only)",
    "Load test (k6)": "needs k6 and a load-test environment; its outputs start and end are given: the last 30 minutes",
    "Comment the summary on the pull request": "needs the GitHub API (gh pr comment)",
}


def _now() -> float:
    return float(int(time.time() // 60) * 60)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A throw-away Prometheus with 3 days up to now: /checkout +50% for the last 25 minutes (app_build_info
    1.4.2 -> 1.5.0 then), /home unchanged."""
    require_tools("prometheus", "promtool")
    now = _now()
    series = []
    for route, seed, size in (("/checkout", 1, 0.5), ("/home", 2, 0.0)):
        synthetic = generate(days=3, step=60, level=0.2, daily_amplitude=0.2, weekend_dip=0.0, noise=0.04,
                             seed=seed, end=now + 60)  # fmt: skip
        if size:
            inject_step(synthetic, now - 1500, size)
        series.append(BackfillSeries("app_latency_seconds", {"route": route}, synthetic.timestamps, synthetic.values))
    for version, start, end in (("1.4.2", now - 3 * 86400, now - 1500), ("1.5.0", now - 1500, now + 60)):
        stamps = np.arange(start, end, 60.0)
        series.append(BackfillSeries("app_build_info", {"version": version}, stamps, np.ones(stamps.size)))
    server = LocalPrometheus(tmp_path_factory.mktemp("live-prometheus"))
    server.backfill(series)
    with server:
        yield server, now


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> tuple[Path, str]:
    """A virtualenv (with this machine's packages, so the dependencies are not downloaded again) and a copy of
    this repository's source, which the templates' install step gets as PERFSENTINEL_SOURCE."""
    root = tmp_path_factory.mktemp("template-env")
    source = root / "perfsentinel-source"
    ignored = shutil.ignore_patterns(".git", ".work", "__pycache__", "*.egg-info", "build", "dist", ".venv",
                                     ".pytest_cache", ".ruff_cache", "node_modules")  # fmt: skip
    shutil.copytree(REPO, source, ignore=ignored)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], check=True)
    return root / "venv" / "bin", source.as_uri()


CONFIG = {
    "targets": [
        {"name": "latency", "query": "app_latency_seconds", "kind": "latency", "step": "5m", "history": "2d",
         "min_history": "1d", "seasonality": "daily"},
    ]
}  # fmt: skip


def _workdir(tmp_path: Path, url: str) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "perfsentinel.yaml").write_text(yaml.safe_dump({"prometheus": {"url": url}, **CONFIG}))
    return work


def _bash(script: str, work: Path, env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    environment.pop("VIRTUAL_ENV", None)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=work,
                          env=environment, capture_output=True, text=True, timeout=600)  # fmt: skip


def _report(work: Path) -> dict[str, dict]:
    document = json.loads((work / "perf-report" / "report.json").read_text())
    return {item["labels"]["route"]: item for item in document["series"]}


@pytest.mark.integration
def test_github_actions_template_runs_its_steps_here(live, venv, tmp_path):
    """Every run: step of the workflow in order, with the GitHub expressions and variables it expects; steps that
    need GitHub itself, k6 or the caller's deployment are skipped (GITHUB_SKIPPED says which and why)."""
    server, now = live
    bin_dir, source = venv
    work = _workdir(tmp_path, server.url)
    (work / "deploy").mkdir()
    (work / "deploy" / "load-test-env.sh").write_text('#!/bin/sh\necho deployed "$1"\n')
    (work / "deploy" / "load-test-env.sh").chmod(0o755)
    job = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())["jobs"]["load-test-and-gate"]
    env = {key: str(value) for key, value in job["env"].items()}
    env.update(PROMETHEUS_URL=server.url, PROMETHEUS_TOKEN="", PERFSENTINEL_SOURCE=source,
               GITHUB_SHA="0123456789abcdef", GITHUB_STEP_SUMMARY=str(work / "step-summary.md"))  # fmt: skip
    outputs = {"load": {"start": rfc3339(now - 1800), "end": rfc3339(now)}}
    github = {"github.event.pull_request.number": "42", "github.event_name": "pull_request"}
    ran, skipped = [], []
    for step in job["steps"]:
        name = step.get("name") or step.get("uses")
        if "run" not in step or name in GITHUB_SKIPPED:
            skipped.append(name)
            continue
        condition = step.get("if", "")
        if condition.startswith("steps.gate.outputs.exit_code != '0'") and outputs["gate"]["exit_code"] == "0":
            continue
        script = re.sub(r"\$\{\{\s*([^}]*?)\s*\}\}", lambda m: _expression(m.group(1), outputs, github), step["run"])
        output_file = work / f"output-{step.get('id', len(ran))}"
        output_file.write_text("")
        done = _bash(script, work, {**env, "GITHUB_OUTPUT": str(output_file)}, bin_dir)
        ran.append((name, done.returncode))
        outputs[step.get("id", "")] = dict(
            line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
        )
        if name == "Fail on a gated regression (1), a configuration error (2) or an undecided check (3)":
            assert done.returncode == 1, done.stdout + done.stderr
        else:
            assert done.returncode == 0, f"{name}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert [name for name, _ in ran] == [
        "Install Perf Sentinel",
        "Deploy the candidate to the load-test environment",
        "Performance gate",
        "Fail on a gated regression (1), a configuration error (2) or an undecided check (3)",
    ]
    assert set(skipped) == set(GITHUB_SKIPPED)
    assert outputs["gate"]["exit_code"] == "1"
    routes = _report(work)
    assert routes["/checkout"]["verdict"] == "fail" and routes["/home"]["verdict"] == "pass"
    assert 'version="1.5.0"' in routes["/checkout"]["likely_cause"]["description"]
    assert sorted(p.name for p in (work / "perf-report").iterdir()) == sorted(FILENAMES.values())
    assert "Perf Sentinel check" in (work / "step-summary.md").read_text()


def _expression(text: str, outputs: dict[str, dict[str, str]], github: dict[str, str]) -> str:
    if text.startswith("steps."):
        _, step, _, key = text.split(".")
        return outputs[step][key]
    return github[text]


GITLAB_SKIPPED = {
    "load_test": "runs k6 in its own image against a load-test environment; its artifacts load-start.txt and "
    "load-end.txt are given: the last 30 minutes",
    "apt-get": "installs git, curl and jq into the python:3.11-slim image; this machine has them",
}


@pytest.mark.integration
def test_gitlab_ci_template_runs_its_scripts_here(live, venv, tmp_path):
    """perf_gate's before_script and script, in one shell as the GitLab runner runs them, with the CI/CD
    variables they expect; the load_test job and the apt-get line are skipped (GITLAB_SKIPPED)."""
    server, now = live
    bin_dir, source = venv
    work = _workdir(tmp_path, server.url)
    (work / "load-start.txt").write_text(rfc3339(now - 1800) + "\n")
    (work / "load-end.txt").write_text(rfc3339(now) + "\n")
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    job = pipeline["perf_gate"]
    assert set(pipeline) - {"stages", "perf_gate"} == {"load_test"}
    lines = [line for line in job["before_script"] if not line.startswith("apt-get")]
    assert len(lines) == len(job["before_script"]) - 1 and all(shutil.which(t) for t in ("git", "curl", "jq"))
    env = {"CI_PROJECT_DIR": str(work), "CI_COMMIT_SHORT_SHA": "01234567", "PROMETHEUS_URL": server.url,
           "CI_MERGE_REQUEST_IID": "", "PERF_GATE_TOKEN": ""}  # fmt: skip
    variables = {key: re.sub(r"\$CI_PROJECT_DIR", str(work), str(value)) for key, value in job["variables"].items()}
    variables["PERFSENTINEL_SOURCE"] = source
    done = _bash("\n".join([*lines, *job["script"]]), work, {**variables, **env}, bin_dir)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # the gated regression fails the job
    routes = _report(work)
    assert routes["/checkout"]["verdict"] == "fail" and routes["/home"]["verdict"] == "pass"
    for artifact in (*job["artifacts"]["paths"], job["artifacts"]["reports"]["junit"]):
        assert (work / artifact).is_file(), artifact
