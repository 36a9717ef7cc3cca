"""Reports for a regressed and a clean check run: JSON schema fields, JUnit XML valid against the Jenkins /
Surefire schema (junit-10.xsd) and parsed back, the Markdown summary and the self-contained HTML.

The XSD is the one pytest validates its own junitxml output against (testing/example_scripts/junit-10.xsd,
MIT licence, Gregory Boissinot, from the Jenkins xunit plugin). It is taken from pytest's source distribution
on PyPI with pip, cached under ~/.cache/perfsentinel-tests, so no third-party file is committed here.
The runs are built from generated samples with known shifts through the real statistics (no Prometheus).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from analyzer.detection import stats
from analyzer.gate.check import (
    FAIL,
    PASS,
    WARN,
    CheckOptions,
    CheckResult,
    PlotData,
    SeriesCheck,
    exit_code,
)
from analyzer.gate.recommendations import Event, Situation, recommend
from analyzer.gate.reports import FILENAMES, junit, markdown, write_reports
from analyzer.gate.reports import html as html_report
from analyzer.gate.reports.build import from_check
from analyzer.gate.reports.json import to_json
from analyzer.gate.reports.model import SCHEMA
from analyzer.gate.timewindows import parse_window

NOW = 1_767_571_200.0
PYTEST_SDIST = "pytest==8.3.4"
XSD_MEMBER = "testing/example_scripts/junit-10.xsd"
CACHE = Path.home() / ".cache" / "perfsentinel-tests"


@pytest.fixture(scope="session")
def junit_schema():
    try:
        from lxml import etree
    except ImportError:
        pytest.fail("lxml is needed to validate JUnit XML: pip install -e '.[test]'")
    path = CACHE / "junit-10.xsd"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(CACHE),
                PYTEST_SDIST,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.fail(f"could not fetch {PYTEST_SDIST} for its junit-10.xsd: {done.stderr[-500:]}")
        archive = next(CACHE.glob("pytest-*.tar.gz"))
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(XSD_MEMBER))
            path.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return etree.XMLSchema(etree.parse(str(path)))


def _series(target: str, route: str, shift: float, seed: int, budget=None) -> SeriesCheck:
    """A compared series: 400 baseline and 60 candidate samples around 0.2 s, the candidate shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    reference = 0.2 * (1 + 0.04 * rng.standard_normal(400))
    recent = 0.2 * (1 + shift + 0.04 * rng.standard_normal(60))
    item = SeriesCheck(target, {"route": route}, fail_on="significant")
    item.comparison = stats.compare_windows(reference, recent, float(np.median(reference)), "lower_is_better")
    item.baseline_mean, item.candidate_mean, item.budget = float(reference.mean()), float(recent.mean()), budget
    times = NOW - 3600 + 60 * np.arange(60)
    item.plot = PlotData(times, recent, np.full(60, 0.2), np.full(60, 0.18), np.full(60, 0.22), NOW - 3600)
    return item


def _run(shifts: dict[str, float], undecided: bool = False) -> CheckResult:
    """A check run over /route series with the given relative shifts, gated like analyzer.gate.check does."""
    options = CheckOptions("window", parse_window("now-1h:now", NOW), parse_window("now-7d:now-1h", NOW))
    result = CheckResult(options, NOW - 2, NOW)
    result.series = [_series("latency", route, shift, seed) for seed, (route, shift) in enumerate(shifts.items())]
    q_values = stats.benjamini_hochberg([s.comparison.p_value for s in result.series])
    deploy = Event(NOW - 2400, 'app_build_info{version="1.5.0"} appeared', "query")
    for item, q in zip(result.series, q_values, strict=True):
        item.q_value = float(q)
        regressed = q <= options.alpha and item.comparison.worse
        item.severity = stats.severity_for(item.comparison.change_pct) if regressed else "none"
        item.verdict = {"none": PASS, "minor": WARN}.get(item.severity, FAIL)
        if item.verdict != PASS:
            item.change_start, item.cause = NOW - 2400, deploy
            item.recommendations = recommend(
                Situation(item.target, item.key, "window", item.change_start, deploy, True, None, None)
            )
    if undecided:
        result.series.append(SeriesCheck("latency", {"route": "/new"}, reason="no baseline series with these labels"))
    result.exit_code = exit_code(result)
    return result


REGRESSED = {"/checkout": 0.40, "/search": 0.07, "/home": 0.0, "/cart": 0.20}
CLEAN = {"/checkout": 0.0, "/search": -0.02, "/home": 0.0}


def test_exit_codes_follow_the_worst_verdict():
    assert _run(REGRESSED).exit_code == 1
    assert _run(CLEAN).exit_code == 0
    assert _run(CLEAN, undecided=True).exit_code == 3


def test_json_report_has_the_documented_fields_worst_first(tmp_path):
    report = from_check(_run(REGRESSED))
    document = json.loads(json.dumps(to_json(report)))
    assert document["schema"] == SCHEMA and document["kind"] == "check" and document["exit_code"] == 1
    assert document["verdict"] == "fail" and document["counts"] == {"fail": 2, "warn": 1, "undecided": 0, "pass": 1}
    routes = [s["labels"]["route"] for s in document["series"]]
    assert routes == ["/checkout", "/cart", "/search", "/home"]  # fail by change %, then warn, then pass
    worst = document["series"][0]
    assert worst["severity"] == "critical" and worst["gate"] == "significant"
    assert set(worst["statistics"]) >= {
        "test",
        "p_value",
        "q_value",
        "effect_size",
        "change_pct",
        "ci_low_pct",
        "ci_high_pct",
        "baseline_mean",
        "candidate_mean",
    }
    assert 30 < worst["statistics"]["change_pct"] < 50
    assert worst["statistics"]["ci_low_pct"] <= worst["statistics"]["change_pct"] <= worst["statistics"]["ci_high_pct"]
    assert worst["likely_cause"]["timestamp"] == "2026-01-04T23:20:00Z"
    assert [r["action"] for r in worst["recommendations"]] == ["investigate", "accept_baseline"]
    assert document["series"][-1]["recommendations"] == []


def test_junit_is_valid_and_parses_back_to_the_verdicts(junit_schema):
    from lxml import etree

    for run, failures in ((_run(REGRESSED), 2), (_run(CLEAN, undecided=True), 0)):
        text = junit.render(from_check(run))
        junit_schema.assertValid(etree.fromstring(text.encode()))
        root = ET.fromstring(text)
        cases = root.findall("./testsuite/testcase")
        assert len(cases) == len(run.series)  # one test case per series
        assert int(root.get("failures")) == failures == len(root.findall(".//failure"))
        failed = {c.get("name") for c in cases if c.find("failure") is not None}
        assert failed == {s.key for s in run.series if s.verdict == FAIL}
        for case in cases:
            if case.find("failure") is not None:
                assert "Likely cause" in case.find("failure").text and "accept_baseline" in case.find("failure").text
    undecided = ET.fromstring(junit.render(from_check(_run(CLEAN, undecided=True))))
    assert [c.get("name") for c in undecided.iter("testcase") if c.find("error") is not None] == ['{route="/new"}']


def test_junit_for_prometheus_errors_and_odd_labels_is_still_valid(junit_schema):
    from lxml import etree

    from analyzer.gate.check import TargetError

    run = _run({"/a\x01<&>\"'": 0.3})
    run.errors.append(TargetError("other", "prometheus_unavailable", "connection refused"))
    run.exit_code = exit_code(run)
    text = junit.render(from_check(run))
    junit_schema.assertValid(etree.fromstring(text.encode()))
    suites = ET.fromstring(text).findall("testsuite")
    assert [s.get("name") for s in suites] == ["perfsentinel.check.latency", "perfsentinel.check.other"]
    assert suites[1].find("testcase/error").get("type") == "prometheus_unavailable"


def test_markdown_for_a_regressed_run_lists_worst_first_with_numbers_and_advice():
    text = markdown.render(from_check(_run(REGRESSED)))
    assert text.startswith("### Perf Sentinel check: regression at or above the gate: failing")
    rows = [line for line in text.splitlines() if line.startswith("| :")]
    assert "/checkout" in rows[0] and "/cart" in rows[1] and "/search" in rows[2]
    assert re.search(r"\+\d+\.\d% \[\+\d+\.\d%, \+\d+\.\d%\]", rows[0])  # change % with its interval
    assert "< 0.001" in rows[0] and "critical / significant" in rows[0]
    assert "#### What to do" in text and "Likely cause: app_build_info" in text and "accept it as the baseline" in text
    assert "<details><summary>1 passing</summary>" in text
    assert len(text) < 65536


def test_markdown_for_a_clean_run_says_so_and_keeps_passes_folded():
    text = markdown.render(from_check(_run(CLEAN)))
    assert text.startswith("### Perf Sentinel check: no regression at or above the gate")
    assert "What to do" not in text and "<details><summary>3 passing</summary>" in text


def test_markdown_caps_the_table_for_large_runs():
    shifts = {f"/r{i}": 0.3 for i in range(60)}
    text = markdown.render(from_check(_run(shifts)), max_rows=25)
    assert sum(1 for line in text.splitlines() if line.startswith("| :x:")) == 25
    assert "... and 35 more not passing" in text
    assert "recommendations for 35 more series are in the HTML and JSON reports" in text


def test_html_embeds_one_plot_per_regressed_series_and_is_self_contained():
    text = html_report.render(from_check(_run(REGRESSED)))
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 3  # two failing and one warning series; none for the passing one
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "Likely cause" in text and "accept baseline" in text


def test_html_for_a_clean_run_has_no_plots():
    text = html_report.render(from_check(_run(CLEAN)))
    assert "data:image/png" not in text and "None." in text and "no regression at or above the gate" in text


def test_write_reports_writes_every_format_or_prints_one(tmp_path, capsys):
    report = from_check(_run(REGRESSED))
    written = write_reports(report, tmp_path, None)
    assert sorted(p.name for p in written) == sorted(FILENAMES.values())
    write_reports(report, None, ["json"])
    assert json.loads(capsys.readouterr().out)["verdict"] == "fail"


def test_backtest_report_flags_the_file_with_an_injected_step(tmp_path):
    from analyzer.commands.cli import main
    from analyzer.synthetic import generate, inject_step

    for name, size in (("stepped", 0.8), ("clean", 0.0)):
        series = generate(days=3, step=300, seed=3)
        if size:
            inject_step(series, float(series.timestamps[-200]), size)
        stamps = np.datetime_as_string((series.timestamps * 1000).astype("datetime64[ms]"), unit="s")
        lines = ["timestamp,value", *(f"{t},{v}" for t, v in zip(stamps, series.values, strict=True))]
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{name}.csv").write_text("\n".join(lines) + "\n")
    code = main(
        [
            "backtest",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--model",
            "profile",
            "--refit-every",
            "1d",
            "--workers",
            "1",
            "--report",
            str(tmp_path / "report"),
        ]
    )
    assert code == 0
    document = json.loads((tmp_path / "report" / "report.json").read_text())
    by_file = {item["target"]: item for item in document["series"]}
    assert document["kind"] == "backtest" and by_file["stepped.csv"]["verdict"] == "warn"
    assert by_file["stepped.csv"]["anomaly"]["anomalous_points"] > by_file["clean.csv"]["anomaly"]["anomalous_points"]
    assert by_file["stepped.csv"]["recommendations"]
    # the regression verdict of the replay: critical, starting where the step was injected
    assert by_file["stepped.csv"]["severity"] == "critical"
    assert by_file["stepped.csv"]["change_start"] == "2026-01-04T07:20:00Z"
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()


def test_once_report_marks_anomalous_and_undecided_series():
    from analyzer.gate.reports.build import from_snapshot
    from analyzer.results import INSUFFICIENT_DATA, OK, SeriesResult, Snapshot, TargetOutcome

    snapshot = Snapshot(
        NOW,
        [
            SeriesResult("latency", {"route": "/a"}, OK, "", NOW, 0.5, 0.2, 0.15, 0.25, 6.0, "stl", "daily"),
            SeriesResult("latency", {"route": "/b"}, OK, "", NOW, 0.21, 0.2, 0.15, 0.25, 0.2, "stl", "daily"),
            SeriesResult("latency", {"route": "/c"}, INSUFFICIENT_DATA, "too_short"),
        ],
        [TargetOutcome("latency", True, "", 3)],
    )
    report = from_snapshot(snapshot, 0, NOW - 1)
    verdicts = {i.labels["route"]: i.verdict for i in report.items}
    assert verdicts == {"/a": WARN, "/b": PASS, "/c": "undecided"}
    assert report.worst_first()[0].labels["route"] == "/a" and report.worst_first()[0].recommendations
    assert "score 6" in markdown.render(report)


def test_once_report_carries_the_services_regression_verdict():
    """Results with the regression fields of analyzer.detection.regression become warn items with statistics and
    cause."""
    from types import SimpleNamespace

    from analyzer.gate.reports.build import from_snapshot
    from analyzer.results import OK, Snapshot, TargetOutcome

    fields = dict(
        target="latency",
        labels={"route": "/a"},
        status=OK,
        reason="",
        timestamp=NOW,
        value=0.26,
        expected=0.2,
        lower=0.1,
        upper=0.3,
        anomaly_score=0.6,
        model="stl",
        verdict="significant",
        p_value=1e-6,
        q_value=2e-6,
        effect_size=1.4,
        change_pct=21.0,
        change_ci_low=15.0,
        change_ci_high=27.0,
        regression_start=NOW - 1800,
        regression_event="deploy 1.5.0",
        verdict_reason="",
    )
    report = from_snapshot(Snapshot(NOW, [SimpleNamespace(**fields)], [TargetOutcome("latency", True)]), 0, NOW)
    item = report.items[0]
    assert item.verdict == WARN and item.severity == "significant" and item.statistics["change_pct"] == 21.0
    assert item.likely_cause.description == "deploy 1.5.0" and item.change_start == NOW - 1800
    assert "baseline accept" in item.recommendations[1].text


def test_html_caps_the_number_of_plots_and_says_so():
    text = html_report.render(from_check(_run({f"/r{i}": 0.3 for i in range(6)})), max_plots=2)
    assert text.count("data:image/png;base64,") == 2
    assert "Plots for the 2 worst of 6 regressed series." in text


def test_junit_marks_undecided_as_skipped_when_undecided_passes(junit_schema):
    from dataclasses import replace

    from lxml import etree

    run = _run(CLEAN, undecided=True)
    run.options = replace(run.options, undecided="pass")
    run.exit_code = exit_code(run)
    text = junit.render(from_check(run))
    junit_schema.assertValid(etree.fromstring(text.encode()))
    root = ET.fromstring(text)
    assert run.exit_code == 0 and root.find(".//error") is None
    assert [c.get("name") for c in root.iter("testcase") if c.find("skipped") is not None] == ['{route="/new"}']


# ---------------------------------------------------------------- the JSON report against docs/report-schema.md
SCHEMA_DOC = Path(__file__).resolve().parent.parent / "docs" / "report-schema.md"


def _documented(heading: str) -> set[str]:
    """The field names in the first column of the table under ``heading`` in docs/report-schema.md."""
    text = SCHEMA_DOC.read_text()
    section = text.split(heading, 1)[1]
    fields: set[str] = set()
    started = False
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            started = True
            first = line.split("|")[1]
            fields.update(re.findall(r"`([a-z_]+)`", first))
        elif started:
            break
    fields.discard("field")
    return fields


def _builds_report() -> dict:
    from analyzer.gate.builds import BuildHistory, BuildsChecker, BuildsOptions
    from analyzer.gate.reports.build import from_builds

    rng = np.random.default_rng(1)
    levels = 100 * (1 + 0.02 * rng.standard_normal(60))
    levels[40:] *= 1.3
    history = BuildHistory(
        "b.csv",
        tuple(str(i) for i in range(60)),
        tuple(NOW + i for i in range(60)),
        {"latency": [np.array([v]) for v in levels]},
    )
    result = BuildsChecker(history, BuildsOptions("b.csv", direction="lower_is_better")).run()
    return to_json(from_builds(result))


def test_json_reports_carry_exactly_the_documented_fields():
    """Every field written is documented (and every documented field is written) in docs/report-schema.md."""
    window = to_json(from_check(_run(REGRESSED)))
    builds = _builds_report()
    top, item_fields = _documented("## Top level"), _documented("## `series[]`")
    for document in (window, builds):
        assert set(document) == top
        for item in document["series"]:
            assert set(item) == item_fields
            if item["statistics"]:
                assert set(item["statistics"]) == _documented("### `statistics` (check)")
            for recommendation in item["recommendations"]:
                assert set(recommendation) == {"action", "text", "command"}
    assert set(window["settings"]) <= _documented("### `settings` for `kind: check`\n")
    assert set(builds["settings"]) == _documented("### `settings` for `kind: check` with `--builds`")
    change_points = builds["series"][0]["change_points"]
    assert change_points and all(set(c) == _documented("### `change_points[]`") for c in change_points)
    assert builds["series"][0]["change_build"] == "40" and window["series"][0]["change_points"] is None
