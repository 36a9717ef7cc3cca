"""`perfsentinel demo --workdir DIR` never deletes what it did not write (issue 26.12): a directory it did not
create is refused when it is not empty, and a rerun deletes only the demo's own entries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.commands.demo import DEMO_ENTRIES, MARKER, prepare_workdir
from analyzer.config import ConfigError
from tests.conftest import require_tools


def run_demo(workdir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer", "demo", "--workdir", str(workdir)], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_a_non_empty_directory_the_demo_did_not_create_is_refused_and_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "thesis.tex"
    precious.write_text("years of work")
    (tmp_path / "prometheus").mkdir()  # even entries named like the demo's own
    (tmp_path / "prometheus" / "data").write_text("someone's TSDB")
    done = run_demo(tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert (
        "--workdir" in done.stderr and "not created by the demo" in done.stderr and "nothing was deleted" in done.stderr
    )
    assert (
        precious.read_text() == "years of work" and (tmp_path / "prometheus" / "data").read_text() == "someone's TSDB"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prometheus", "thesis.tex"]  # no marker written either


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_workdir(target)
    assert target.read_text() == "keep"


def test_a_new_or_empty_directory_is_claimed_with_a_marker(tmp_path: Path) -> None:
    new, empty = tmp_path / "a" / "new", tmp_path / "empty"
    empty.mkdir()
    for workdir in (new, empty):
        prepare_workdir(workdir)
        assert [p.name for p in workdir.iterdir()] == [MARKER]


def test_a_rerun_deletes_only_the_demo_entries(tmp_path: Path) -> None:
    prepare_workdir(tmp_path / "demo")
    workdir = tmp_path / "demo"
    (workdir / "prometheus" / "data").mkdir(parents=True)
    (workdir / "perfsentinel.yml").write_text("old config")
    (workdir / "notes.md").write_text("mine")
    (workdir / "results").mkdir()
    prepare_workdir(workdir)
    assert sorted(p.name for p in workdir.iterdir()) == sorted([MARKER, "notes.md", "results"])
    assert (workdir / "notes.md").read_text() == "mine"
    assert set(DEMO_ENTRIES) == {"prometheus", "perfsentinel.yml"}


@pytest.mark.integration
def test_the_demo_reruns_in_its_directory_and_a_user_file_survives(tmp_path: Path) -> None:
    """One real demo run in a directory an earlier run claimed and left its entries in, with a user file added."""
    require_tools("prometheus", "promtool")
    workdir = tmp_path / "demo"
    prepare_workdir(workdir)  # what the first run does before it writes
    (workdir / "prometheus" / "data").mkdir(parents=True)
    (workdir / "perfsentinel.yml").write_text("the earlier run's config")
    (workdir / "my-notes.txt").write_text("written between two demo runs")
    done = run_demo(workdir)
    assert done.returncode == 0, done.stderr
    assert "api_latency_p95{service=checkout}" in done.stdout  # the injected regression is found
    assert (workdir / "my-notes.txt").read_text() == "written between two demo runs"
    assert {p.name for p in workdir.iterdir()} == {MARKER, "my-notes.txt", *DEMO_ENTRIES}
    assert "url: http://127.0.0.1:" in (workdir / "perfsentinel.yml").read_text()  # the new run's config
