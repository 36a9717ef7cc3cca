"""The Alertmanager example (rules/alertmanager.yml): amtool checks, routing of every alert, the commented
receiver examples, and inhibition on a real Alertmanager."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from analyzer.prometheus.localprom import free_port, wait_http
from tests.conftest import REPO, require_tools

CONFIG = REPO / "rules" / "alertmanager.yml"
SERIES = {"target": "api_latency", "service": "checkout", "job": "perfsentinel", "instance": "ps:9977"}


def amtool(*args: str) -> subprocess.CompletedProcess:
    require_tools("amtool")
    return subprocess.run(["amtool", *args], capture_output=True, text=True)


def rule_alerts() -> dict[str, dict[str, str]]:
    """alertname -> labels of every shipped alert."""
    found = {}
    for path in sorted((REPO / "rules").glob("perfsentinel-*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.update({r["alert"]: r["labels"] for r in group["rules"] if "alert" in r})
    return found


def test_example_passes_amtool_check_config() -> None:
    done = amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


ROUTES = [
    ({"severity": "critical", "alertname": "PerfSentinelRegressionCritical"}, "pager"),
    ({"severity": "critical", "alertname": "PerfSentinelRegressionEscalated", "escalated": "true"}, "pager"),
    ({"severity": "warning", "alertname": "PerfSentinelRegressionSignificant"}, "chat"),
    ({"severity": "warning", "alertname": "PerfSentinelDown"}, "chat"),
    ({"severity": "info", "alertname": "PerfSentinelRegressionMinor"}, "ticket"),
    ({"severity": "info", "alertname": "PerfSentinelAnomaly"}, "ticket"),
    ({"severity": "info", "alertname": "PerfSentinelNovelty"}, "ticket"),
    ({"severity": "none", "alertname": "PerfSentinelHeartbeat"}, "heartbeat"),
    ({"alertname": "SomethingElse"}, "blackhole"),
]


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=[r[1] + "-" + r[0]["alertname"] for r in ROUTES])
def test_amtool_routes_test(labels: dict[str, str], receiver: str) -> None:
    args = [f"{k}={v}" for k, v in {**SERIES, **labels}.items()]
    done = amtool("config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receiver}", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_amtool_routes_test_detects_a_wrong_receiver() -> None:
    done = amtool("config", "routes", "test", f"--config.file={CONFIG}", "--verify.receivers=chat", "severity=critical")
    assert done.returncode != 0


def test_every_shipped_alert_routes_by_its_severity() -> None:
    expected = {"critical": "pager", "warning": "chat", "info": "ticket", "none": "heartbeat"}
    for name, labels in rule_alerts().items():
        done = amtool("config", "routes", "test", f"--config.file={CONFIG}", f"alertname={name}",
                      *[f"{k}={v}" for k, v in labels.items()])  # fmt: skip
        assert done.stdout.strip() == expected[labels["severity"]], name


def test_grouping_and_repeat_intervals() -> None:
    route = yaml.safe_load(CONFIG.read_text())["route"]
    assert route["group_by"] == ["alertname", "target"]
    intervals = {r["receiver"]: r.get("repeat_interval", route["repeat_interval"]) for r in route["routes"]}
    assert intervals == {"heartbeat": "1m", "pager": "1h", "chat": "4h", "ticket": "24h"}


def uncommented_examples(text: str) -> str:
    """The config with every commented ``*_configs:`` receiver example uncommented."""
    lines, out, inside = text.splitlines(), [], None
    for line in lines:
        start = re.match(r"^(\s*)# ([a-z]+_configs:)\s*$", line)
        if start:
            inside = start.group(1)
            out.append(inside + start.group(2))
            continue
        if inside is not None and line.startswith(inside + "#   "):
            out.append(inside + line[len(inside) + 2 :])
            continue
        inside = None
        out.append(line)
    return "\n".join(out) + "\n"


def test_commented_receiver_examples_are_valid(tmp_path: Path) -> None:
    text = uncommented_examples(CONFIG.read_text())
    document = yaml.safe_load(text)
    kinds = {key for receiver in document["receivers"] for key in receiver if key.endswith("_configs")}
    assert {"slack_configs", "msteams_configs", "pagerduty_configs", "email_configs", "webhook_configs"} <= kinds
    for receiver in document["receivers"]:
        receiver.pop("msteams_configs", None)  # Alertmanager >= 0.26; the one installed here may be older
    for secret in ("pagerduty-routing-key", "slack-webhook-url", "smtp-password"):
        (tmp_path / secret).write_text("example\n")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(document).replace("/etc/alertmanager/secrets", str(tmp_path)))
    done = amtool("check-config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- inhibition on a real Alertmanager
@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    require_tools("prometheus-alertmanager")
    port = free_port()
    log = open(tmp_path / "alertmanager.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={CONFIG}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", 30, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(UTC)
    body = [{"labels": labels, "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}
            for labels in alerts]  # fmt: skip
    requests.post(f"{url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def inhibited(url: str) -> dict[tuple[str, str], bool]:
    alerts = requests.get(f"{url}/api/v2/alerts", timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"].get("service", "")): bool(a["status"]["inhibitedBy"])
            for a in alerts}  # fmt: skip


def test_critical_inhibits_warning_and_info_of_the_same_series_only(alertmanager: str) -> None:
    other = {**SERIES, "service": "search"}
    post_alerts(alertmanager, [
        {**SERIES, "alertname": "PerfSentinelRegressionEscalated", "severity": "critical", "escalated": "true"},
        {**SERIES, "alertname": "PerfSentinelRegressionSignificant", "severity": "warning"},
        {**SERIES, "alertname": "PerfSentinelAnomaly", "severity": "info"},
        {**other, "alertname": "PerfSentinelRegressionSignificant", "severity": "warning"},
        {**other, "alertname": "PerfSentinelAnomaly", "severity": "info"},
        {"alertname": "PerfSentinelDown", "severity": "warning", "job": "perfsentinel", "instance": "ps:9977"},
    ])  # fmt: skip
    assert inhibited(alertmanager) == {
        ("PerfSentinelRegressionEscalated", "checkout"): False,
        ("PerfSentinelRegressionSignificant", "checkout"): True,  # critical silences warning, same series
        ("PerfSentinelAnomaly", "checkout"): True,  # ... and info
        ("PerfSentinelRegressionSignificant", "search"): False,  # another series is not silenced
        ("PerfSentinelAnomaly", "search"): True,  # warning silences info of the same series
        ("PerfSentinelDown", ""): False,  # alerts without a target are never inhibited by series alerts
    }
