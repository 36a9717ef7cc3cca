"""The CI examples are valid workflow files and call perfsentinel check with flags it accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from analyzer.commands.cli import parser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
    assert args.events_query == "app_build_info" and args.baseline == "now-7d:now-2h"
