"""Reports for ``check``, ``once`` and ``backtest``: JSON, JUnit XML, Markdown and self-contained HTML."""

from __future__ import annotations

import sys
from pathlib import Path

from analyzer.gate.reports import html, json, junit, markdown
from analyzer.gate.reports.model import Report

WRITERS = {"json": json.render, "junit": junit.render, "markdown": markdown.render, "html": html.render}
FILENAMES = {"json": "report.json", "junit": "junit.xml", "markdown": "summary.md", "html": "report.html"}
FORMATS = tuple(WRITERS)


def write_reports(report: Report, directory: Path | None, formats: list[str] | None) -> list[Path]:
    """Every requested format (all four by default) into ``directory``; without a directory, the one
    requested format to stdout."""
    chosen = formats or list(FORMATS)
    if directory is None:
        for name in chosen:
            sys.stdout.write(WRITERS[name](report))
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in chosen:
        path = directory / FILENAMES[name]
        path.write_text(WRITERS[name](report), encoding="utf-8")
        written.append(path)
    return written
