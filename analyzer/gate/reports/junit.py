"""JUnit XML, so CI systems list every series as a test: one ``<testsuite>`` per target, one ``<testcase>``
per series (per file for a backtest).

A gated regression or a breached budget is a ``<failure>``; a series the check could not decide is an
``<error>`` when undecided fails the build (``--undecided fail``) and ``<skipped>`` otherwise; a regression
below the gate passes with its numbers in ``<system-out>``. Attributes follow the Jenkins/Surefire schema
(junit-10.xsd) that GitHub, GitLab, Jenkins and Azure DevOps read.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from itertools import groupby

from analyzer.gate.check import FAIL, UNDECIDED, WARN
from analyzer.gate.reports.model import Report, ReportItem
from analyzer.gate.reports.text import item_details, item_headline
from analyzer.gate.timewindows import rfc3339

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    return _INVALID_XML.sub("?", value)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _testcase(item: ReportItem, report: Report) -> ET.Element:
    name = item.series or item.target
    case = ET.Element(
        "testcase",
        name=_text(name),
        classname=_text(f"perfsentinel.{report.kind}.{item.target}"),
        time=_seconds(item.duration),
    )
    details = _text(item_details(item))
    if item.verdict == FAIL:
        kind = "regression" if item.severity != "none" else "budget"
        ET.SubElement(case, "failure", message=_text(item_headline(item)), type=kind).text = details
    elif item.verdict == UNDECIDED:
        tag = "error" if report.settings.get("undecided", "fail") == "fail" and report.kind == "check" else "skipped"
        ET.SubElement(case, tag, message=_text(item.reason or "could not decide"), type="undecided").text = details
    elif item.verdict == WARN or item.statistics or item.anomaly:
        ET.SubElement(case, "system-out").text = details
    return case


def _error_case(error: dict, kind: str) -> ET.Element:
    case = ET.Element("testcase", name="query", classname=_text(f"perfsentinel.{kind}.{error['target']}"), time="0.000")
    ET.SubElement(case, "error", message=_text(error["message"][:500]), type=error["kind"]).text = _text(
        error["message"]
    )
    return case


def _flatten(settings: dict, prefix: str = "") -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = []
    for key, value in settings.items():
        if isinstance(value, dict):
            pairs += _flatten(value, f"{prefix}{key}.")
        elif value is not None:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _suite(name: str, cases: list[ET.Element], report: Report) -> ET.Element:
    count = lambda tag: sum(1 for c in cases if c.find(tag) is not None)  # noqa: E731
    suite = ET.Element(
        "testsuite",
        name=_text(name),
        tests=str(len(cases)),
        failures=str(count("failure")),
        errors=str(count("error")),
        skipped=str(count("skipped")),
        time=_seconds(sum(float(c.get("time", "0")) for c in cases)),
        timestamp=rfc3339(report.generated_at).rstrip("Z"),
        hostname=socket.gethostname() or "localhost",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in _flatten(report.settings):
        ET.SubElement(properties, "property", name=key, value=_text(str(value)))
    suite.extend(cases)
    return suite


def render(report: Report) -> str:
    root = ET.Element("testsuites", name=f"perfsentinel {report.kind}", time=_seconds(report.duration))
    items = sorted(report.items, key=lambda i: (i.target, i.series))
    targets = {i.target for i in items} | {e["target"] for e in report.errors}
    grouped = {target: list(group) for target, group in groupby(items, key=lambda i: i.target)}
    for target in sorted(targets):
        cases = [_testcase(i, report) for i in grouped.get(target, [])]
        cases += [_error_case(e, report.kind) for e in report.errors if e["target"] == target]
        root.append(_suite(f"perfsentinel.{report.kind}.{target}", cases, report))
    for attribute in ("tests", "failures", "errors"):
        root.set(attribute, str(sum(int(s.get(attribute, "0")) for s in root)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
