"""The container image, built and run (issue 31).

scripts/build-image.sh builds the Dockerfile (here with buildah from a debootstrapped Debian base: there is no
Docker daemon), and the service runs from the built root file system the closest way these machines allow
(`podman run` is refused): in a private mount namespace, the image's root bind-mounted read-only, a tmpfs at
/tmp, /proc, a minimal /dev, the state directory as the only writable mount and the config directory read-only,
then the image's entrypoint and command with its environment, working directory and user (uid 10001, no
supplementary groups), against a real Prometheus on the host (the host's network, like `--network host`).

Timings and sizes are printed (pytest -s). The build is cached between runs on one machine (the base under
~/.cache/perfsentinel-image and in buildah's storage, the dependency layers in buildah's storage); from a clean
machine it takes a few minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from analyzer.commands.cli import parser
from analyzer.config import DEFAULT_LISTEN, load_config
from analyzer.prometheus.localprom import BackfillSeries, free_port, wait_http
from analyzer.synthetic import generate

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-image.sh"
CHART = REPO / "helm" / "perfsentinel"
COMPOSE_FILE = REPO / "docker-compose.yml"
TAG = f"localhost/perfsentinel:test-{os.getpid()}"  # removed afterwards; the layers stay cached
STATE_DIR = "/var/lib/perfsentinel"
CONFIG_DIR = "/etc/perfsentinel"
TIMINGS: dict[str, float] = {}

# Runs "$@" (after `env -i`) in a private mount namespace, chrooted into the image's root mounted read-only. The
# arguments before "$@": the mount point to use, the image's root, the state directory, the config directory.
HARNESS = r"""
set -eu
root=$1 image=$2 state=$3 config=$4
shift 4
mount --bind "$image" "$root"
mount -o remount,bind,ro "$root"
if touch "$root/.write-probe" 2>/dev/null; then echo "harness: the image root is writable" >&2; exit 97; fi
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o nosuid,mode=755,size=1m tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node" && mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/shm" && mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$root/tmp"
mount --bind "$state" "$root/var/lib/perfsentinel"
mount --bind "$config" "$root/etc/perfsentinel" && mount -o remount,bind,ro "$root/etc/perfsentinel"
exec env -i "$@"
"""


@dataclass
class Image:
    name: str
    storage_driver: str
    config: dict[str, Any]  # the Docker image config: User, Env, Entrypoint, Cmd, Healthcheck, Volumes, ...
    root: Path  # its root file system (a buildah working container, mounted)

    @property
    def uid_gid(self) -> tuple[int, int]:
        uid, gid = self.config["User"].split(":")
        return int(uid), int(gid)

    @property
    def site_packages(self) -> Path:
        return next((self.root / "opt" / "venv" / "lib").glob("python3.*/site-packages"))


def buildah(driver: str, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(["buildah", "--storage-driver", driver, *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def require_image_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and running the image here needs root (debootstrap, mounts, chroot)")
    missing = [
        tool for tool in ("buildah", "debootstrap", "unshare", "prometheus", "promtool") if not shutil.which(tool)
    ]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install -y buildah debootstrap prometheus (scripts/test.sh "
                    "does this)")  # fmt: skip


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """The image built from the working tree by scripts/build-image.sh, its root mounted for the tests."""
    require_image_tools()
    started = time.monotonic()
    done = subprocess.run(["bash", str(BUILD_SCRIPT), "--tag", TAG], capture_output=True, text=True, timeout=1800)
    TIMINGS["build_s"] = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-6000:]
    print("\n" + "\n".join(line for line in done.stderr.splitlines() if line.startswith("build-image.sh:")))
    assert done.stdout.strip().splitlines()[-1] == TAG
    driver = re.search(r"^build-image\.sh: \[\d+s\] storage driver (\w+)$", done.stderr, re.M).group(1)
    inspected = json.loads(buildah(driver, "inspect", "--type", "image", TAG))
    container = buildah(driver, "from", "--pull=false", "--quiet", TAG)
    try:
        root = Path(buildah(driver, "mount", container))
        yield Image(TAG, driver, inspected["Docker"]["config"], root)
    finally:
        buildah(driver, "umount", container)
        buildah(driver, "rm", container)
        buildah(driver, "rmi", TAG)
        print(f"\nimage timings: {TIMINGS}")


def image_command(image: Image, workdir: Path, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The command line that runs argv in the image as its user, with its environment and working directory."""
    mount_point, state, config = workdir / "root", workdir / "state", workdir / "config"
    for path in (mount_point, state, config):
        path.mkdir(exist_ok=True)
    uid, gid = image.uid_gid
    os.chown(state, uid, gid)
    state.chmod(0o750)
    environment = [*image.config["Env"], *(f"{k}={v}" for k, v in (env or {}).items())]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", HARNESS, "harness", str(mount_point),
            str(image.root), str(state), str(config), *environment, "unshare", f"--root={mount_point}",
            f"--wd={image.config['WorkingDir']}", f"--setgid={gid}", f"--setuid={uid}", "--", *argv]  # fmt: skip


def run_in_image(image: Image, workdir: Path, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(image_command(image, workdir, argv), capture_output=True, text=True, timeout=timeout)


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (mode, size, mtime) of everything in the image's root file system."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            found[path[len(str(root)) :]] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


# ---------------------------------------------------------------- the build script and the Helm chart (fast)
def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def chart_app_version() -> str:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def test_the_build_script_tags_what_the_chart_runs_by_default() -> None:
    done = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-tag"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    image = chart_values()["image"]
    assert (
        done.stdout.strip()
        == f"{image['repository']}:{image['tag'] or chart_app_version()}"
        == f"perfsentinel:{version}"
    )


def test_build_script_commands_in_the_docs_use_options_it_has() -> None:
    help_text = subprocess.run(["bash", str(BUILD_SCRIPT), "--help"], capture_output=True, text=True, timeout=30).stdout
    options = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", help_text))
    assert {"--tag", "--push", "--builder", "--base", "--print-tag", "--help"} <= options
    shown = [match.group(1) for doc in (REPO / "README.md", REPO / "docs" / "deploy.md", CHART / "values.yaml")
             for match in re.finditer(r"scripts/build-image\.sh((?: +--?[a-z][\w-]*(?: +[^-\s`][^\s`]*)?)*)",
                                      doc.read_text())]  # fmt: skip
    assert any("--push" in arguments for arguments in shown)
    unknown = {option for arguments in shown for option in re.findall(r"--[a-z][\w-]*", arguments)} - options
    assert not unknown, f"the docs show options scripts/build-image.sh does not have: {sorted(unknown)}"


def test_the_build_script_refuses_unknown_options() -> None:
    done = subprocess.run(["bash", str(BUILD_SCRIPT), "--tga", "x"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown option --tga" in done.stderr


# ---------------------------------------------------------------- the built image
def helm_pod() -> dict[str, Any]:
    helm = pytest.importorskip("helm_python", reason="pip install -e '.[test]' (helm-python-sdk)")
    rendered = helm.Chart.load(CHART).render({}, name="ps", namespace="monitoring")
    docs = [
        doc for name, text in rendered.items() if not name.endswith("NOTES.txt") for doc in yaml.safe_load_all(text)
    ]
    deployment = next(doc for doc in docs if doc and doc["kind"] == "Deployment")
    config = next(doc for doc in docs if doc and doc["kind"] == "ConfigMap" and "perfsentinel.yml" in doc["data"])
    return {"pod": deployment["spec"]["template"]["spec"], "config": yaml.safe_load(config["data"]["perfsentinel.yml"])}


@pytest.mark.slow
@pytest.mark.integration
def test_image_config_is_what_the_chart_and_the_compose_file_expect(image: Image) -> None:
    """User, volume, port, entrypoint, command and HEALTHCHECK of the built image against the Helm chart's pod and
    the compose service (both run the image's entrypoint with their own arguments)."""
    config = image.config
    port = int(DEFAULT_LISTEN.rsplit(":", 1)[1])
    # the image's default command: run with the config where the chart and compose mount it, on every interface
    assert config["Entrypoint"] == ["perfsentinel"]
    args = parser().parse_args(config["Cmd"])
    assert (args.command, args.config, args.listen) == ("run", f"{CONFIG_DIR}/perfsentinel.yml", f"0.0.0.0:{port}")
    assert config["ExposedPorts"] == {f"{port}/tcp": {}}
    assert config["Volumes"] == {STATE_DIR: {}} and config["WorkingDir"] == STATE_DIR
    assert image.uid_gid == (10001, 10001)
    health = config["Healthcheck"]
    assert health["Test"][0] == "CMD" and f"http://127.0.0.1:{port}/healthz" in health["Test"][-1]
    assert health["Timeout"] < health["Interval"] and health["StartPeriod"] > 0

    # Helm: no command (the entrypoint runs), args the CLI accepts, uid, port, probes, mounts
    chart = helm_pod()
    pod, container = chart["pod"], chart["pod"]["containers"][0]
    assert "command" not in container
    args = parser().parse_args(container["args"])
    assert args.command == "run" and args.config == f"{CONFIG_DIR}/perfsentinel.yml"
    assert chart["config"]["listen"] == f"0.0.0.0:{port}" and chart["config"]["state_dir"] == STATE_DIR
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (*image.uid_gid, image.uid_gid[1])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["ports"][0]["containerPort"] == port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {STATE_DIR, "/tmp"} <= set(mounts) and not mounts[STATE_DIR].get("readOnly")
    assert mounts[f"{CONFIG_DIR}/perfsentinel.yml"]["readOnly"] is True

    # compose: the image's entrypoint with a command the CLI accepts, the state volume, read-only root, tmpfs /tmp
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    service = compose["services"]["perfsentinel"]
    assert "entrypoint" not in service and "user" not in service
    args = parser().parse_args(service["command"])
    assert args.config == f"{CONFIG_DIR}/perfsentinel.yml" and args.listen == f"0.0.0.0:{port}"
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert f"perfsentinel-state:{STATE_DIR}" in service["volumes"]
    assert f"{port}:{port}" in service["ports"]
    mounted = {target: source for source, target in (v.split(":")[:2] for v in service["volumes"])}
    compose_config = load_config(str(REPO / mounted[f"{CONFIG_DIR}/perfsentinel.yml"]), env={})
    assert compose_config.state_dir == STATE_DIR  # the baselines go to the volume


@pytest.mark.slow
@pytest.mark.integration
def test_image_holds_the_service_and_not_its_build_tools(image: Image, tmp_path: Path) -> None:
    """What the Dockerfile drops is gone, every module has its bytecode, the only requirement left unmet is
    Prophet's matplotlib (plots only), and the sizes (printed) stay within a budget."""
    site = image.site_packages
    for gone in ("pip", "setuptools", "matplotlib", "fontTools", "PIL", "pandas/tests", "scipy/stats/tests"):
        assert not (site / gone).exists(), gone
    stan = site / "prophet" / "stan_model"
    assert (stan / "prophet_model.bin").is_file() and not list(stan.glob("cmdstan-*/bin"))
    assert list(stan.glob("cmdstan-*/makefile"))  # cmdstanpy reads the CmdStan version there
    tag = "cpython-" + site.parent.name.removeprefix("python").replace(".", "")
    missing = [str(p.relative_to(site)) for p in site.rglob("*.py")
               if not (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").is_file()]  # fmt: skip
    assert missing == [], f"modules without bytecode (compiled at every start on a read-only root): {missing[:10]}"

    check = """
import importlib.metadata as md
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canonical
installed = {canonical(d.metadata["Name"]) for d in md.distributions()}
unmet = set()
for dist in md.distributions():
    for requirement in map(Requirement, dist.requires or []):
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            if canonical(requirement.name) not in installed:
                unmet.add((canonical(dist.metadata["Name"]), canonical(requirement.name)))
print(sorted(unmet))
"""
    done = run_in_image(image, tmp_path, ["python", "-c", check])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('prophet', 'matplotlib')]"

    sizes = {"image": du_bytes(image.root), "venv": du_bytes(image.root / "opt" / "venv")}
    packages = sorted(((du_bytes(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:8]
    print(f"\nimage {sizes['image'] / 1e6:.0f} MB, venv {sizes['venv'] / 1e6:.0f} MB; largest: "
          + ", ".join(f"{name} {size / 1e6:.0f} MB" for size, name in packages))  # fmt: skip
    assert sizes["venv"] < 330e6 and sizes["image"] < 480e6, sizes  # 288 MB and 418 MB when this was written


def history(end: float) -> list[BackfillSeries]:
    series = []
    for number, service in enumerate(("checkout", "search")):
        generated = generate(days=3, seed=number, end=end)
        series.append(BackfillSeries("latency_seconds", {"service": service}, generated.timestamps, generated.values))
        series.append(BackfillSeries("requests_per_second", {"service": service}, generated.timestamps,
                                     100 + 10 * generated.values))  # fmt: skip
    return series


def write_service_config(directory: Path, prometheus_url: str) -> None:
    (directory / "perfsentinel.yml").write_text(f"""
prometheus:
  url: {prometheus_url}
  timeout: 30s
state_dir: {STATE_DIR}
schedule:
  score_every: 2s
  refit_every: 1h
  fit_workers: 1
defaults:
  step: 5m
  history: 3d
  min_history: 2d
targets:
  - name: latency
    query: latency_seconds
    kind: latency
    model: prophet
    prophet:
      country_holidays: DE
      uncertainty_samples: 0
  - name: throughput
    query: requests_per_second
    kind: throughput
    model: stl
""")
    (directory / "perfsentinel.yml").chmod(0o644)


def scrape(url: str, **auth: Any) -> dict[str, list]:
    """sample name -> its samples (a counter's samples are named ..._total, its family without the suffix)."""
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=10, **auth).text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def write_web_config(directory: Path, owner: tuple[int, int]) -> dict[str, Any]:
    """TLS and basic auth for /metrics (exporter-toolkit web config), readable by the image's user as a Secret
    mounted with fsGroup would be (the key stays 0600); returns what a client needs: CA and credentials."""
    from tests.test_webconfig import PASSWORD, make_pki, tls_users, write_config

    make_pki(directory)
    write_config(directory / "web.yml", tls_users())
    for path in (directory, *directory.iterdir()):
        os.chown(path, *owner)
    return {"verify": str(directory / "ca.crt"), "auth": ("prometheus", PASSWORD)}


def check_analysis(families: dict[str, list], text: str) -> None:
    """promtool accepts the exposition; every series has the baseline its target asks for (Prophet ran)."""
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    models = {
        (s.labels["target"], s.labels["service"], s.labels["model"]) for s in families["perfsentinel_baseline_info"]
    }
    assert models == {("latency", "checkout", "prophet"), ("latency", "search", "prophet"),
                      ("throughput", "checkout", "stl"), ("throughput", "search", "stl")}  # fmt: skip
    assert not families.get("perfsentinel_fit_fallbacks_total"), "a fit fell back to another model"
    assert all(s.value == 0 for s in families.get("perfsentinel_store_errors_total", []))
    fits = {(s.labels["model"], s.labels["outcome"]): s.value for s in families["perfsentinel_fits_total"]}
    assert fits.get(("prophet", "success")) == 2 and fits.get(("stl", "success")) == 2, fits


def check_runs_as_the_image_user(pid: int) -> None:
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^Uid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
    assert re.search(r"^Gid:\s+10001\s+10001\s+10001\s+10001$", status, re.M), status
    assert re.search(r"^Groups:\s*$", status, re.M), "no supplementary groups"


def check_wrote_only_its_state(state: Path, log: str) -> list[str]:
    assert not re.search(r"Traceback|Read-only file system|Errno 30|Permission denied|ERROR", log), log[-4000:]
    written = sorted(str(p.relative_to(state)) for p in state.rglob("*"))
    assert "baselines.sqlite" in written and any(p.startswith("history/") for p in written), written
    assert {p.stat().st_uid for p in state.rglob("*")} == {10001}
    return written


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("secured", [False, True], ids=["plain", "tls-and-basic-auth"])
def test_service_runs_from_the_read_only_image_against_prometheus(
    image: Image, start_prometheus, tmp_path: Path, secured: bool
) -> None:
    """The image's entrypoint and command (its port changed to a free one; with --web.config.file as the chart's
    webConfig adds it) with a read-only root, uid 10001, a tmpfs /tmp and the state directory as the only writable
    mount: /healthz and /readyz (plain HTTP, no credentials, also on the TLS port), a promtool-clean /metrics with
    Prophet and STL baselines, the HEALTHCHECK command, a clean SIGTERM, and nothing written elsewhere."""
    prometheus = start_prometheus(history(np.floor(time.time() / 300) * 300))
    config = tmp_path / "config"
    config.mkdir()
    write_service_config(config, prometheus.url)
    port = free_port()
    command = [*image.config["Entrypoint"], *image.config["Cmd"]]
    command[command.index("--listen") + 1] = f"0.0.0.0:{port}"
    plain, metrics, client = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/metrics", {}
    if secured:
        client = write_web_config(config / "web", image.uid_gid)
        command += ["--web.config.file", f"{CONFIG_DIR}/web/web.yml"]
        metrics = f"https://127.0.0.1:{port}/metrics"
    before = snapshot(image.root)
    log = tmp_path / "service.log"
    started = time.monotonic()
    with open(log, "w") as output:
        service = subprocess.Popen(image_command(image, tmp_path, command), stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_status(f"{plain}/healthz", service, log, 60)
        TIMINGS[f"healthz_s[{secured=}]"] = time.monotonic() - started
        check_runs_as_the_image_user(service.pid)
        wait_for_status(f"{plain}/readyz", service, log, 240)
        TIMINGS[f"readyz_s[{secured=}]"] = time.monotonic() - started
        families = wait_for_scores(metrics, service, log, client)
        check_analysis(families, requests.get(metrics, timeout=10, **client).text)
        if secured:  # the web config is in force: /metrics only over TLS and with the credentials
            assert requests.get(f"{plain}/metrics", timeout=10).status_code == 400
            assert requests.get(metrics, timeout=10, verify=client["verify"]).status_code == 401
        tmp = Path(f"/proc/{service.pid}/root/tmp")
        scratch = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
        health = [part.replace(":9977/", f":{port}/") for part in image.config["Healthcheck"]["Test"][1:]]
        (tmp_path / "healthcheck").mkdir()
        probe = run_in_image(image, tmp_path / "healthcheck", health, timeout=60)
        assert probe.returncode == 0, probe.stderr
    finally:
        service.terminate()
        code = service.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]
    written = check_wrote_only_its_state(tmp_path / "state", log.read_text())
    assert snapshot(image.root) == before, "the service changed the image's root file system"
    print(f"\nservice in the image ({secured=}): state dir {written}; /tmp {scratch}")


def wait_for_status(url: str, service: subprocess.Popen, log: Path, timeout: float) -> None:
    """``wait_http``, failing the test with the end of the service's log."""
    try:
        wait_http(url, timeout, service)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"{exc}:\n{log.read_text()[-4000:]}")


def wait_for_scores(url: str, service: subprocess.Popen, log: Path, client: dict[str, Any]) -> dict[str, list]:
    """The exposition once every series of both targets is scored (status ok)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        families = scrape(url, **client)
        ok = [s for s in families.get("perfsentinel_series_status", []) if s.labels["status"] == "ok" and s.value == 1]
        if len(ok) == 4 and len(families.get("perfsentinel_anomaly_score", [])) == 4:
            return families
        time.sleep(1)
    pytest.fail(f"not every series was scored within 60 s:\n{log.read_text()[-4000:]}")
