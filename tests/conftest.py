"""Shared fixtures. Integration tests use real Prometheus/Alertmanager binaries on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install -y prometheus prometheus-alertmanager "
                    "(.ci/run does this)")  # fmt: skip


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., LocalPrometheus]]:
    """Factory: backfill the given series into a fresh Prometheus and start it; stopped after the test."""
    require_tools("prometheus", "promtool")
    started: list[LocalPrometheus] = []

    def start(series: Sequence[BackfillSeries], config_text: str | None = None, **kwargs) -> LocalPrometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        prometheus = LocalPrometheus(workdir, **({"config_text": config_text} if config_text else {}), **kwargs)
        if series:
            prometheus.backfill(series)
        started.append(prometheus)
        return prometheus.start()

    yield start
    for prometheus in started:
        prometheus.stop()


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the checkout; tests that need it skip cleanly in a user's clone."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (only developers and CI have it)")
    return SHARED
