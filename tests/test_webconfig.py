"""--web.config.file: the exporter-toolkit format's validation, bcrypt basic auth with its cache, reloading, TLS
(server and client certificates) on the real server, and a real Prometheus scraping `perfsentinel run` over
https with basic auth. Certificates are made for each test with the openssl command line."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from analyzer.commands.cli import main
from analyzer.config import ConfigError
from analyzer.prometheus.localprom import free_port, wait_http
from exporter.selfmetrics import SelfMetrics
from exporter.server import Exposition, MetricsServer
from exporter.webconfig import BasicAuth, WebConfigFile, WebConfigInvalid, credentials, load_web_config

PASSWORD = "s3cret: with a colon"
FAST_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: quick tests


# ---------------------------------------------------------------- certificates
def openssl(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def issue(directory: Path, name: str, subject: str, san: str | None = None) -> None:
    """``name``.crt and ``name``.key signed by ca.crt (EC P-256 keys: fast to make)."""
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", subject, *extra, cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", "-copy_extensions", "copy", cwd=directory)  # fmt: skip


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki")


def make_pki(directory: Path) -> Path:
    """A throw-away CA (ca.crt), a server certificate for 127.0.0.1/localhost (server.crt, server.key) and a
    client certificate (client.crt, client.key) in ``directory``."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl missing: apt-get install -y openssl")
    directory.mkdir(parents=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=perfsentinel test CA", cwd=directory)  # fmt: skip
    issue(directory, "server", "/CN=localhost", "IP:127.0.0.1,DNS:localhost")
    issue(directory, "client", "/CN=prometheus")
    return directory


def write_config(path: Path, content: dict[str, Any] | str) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    stat = path.stat()  # a rewrite within the same clock tick must still look changed
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    return path


def tls_users(**tls: str) -> dict[str, Any]:
    return {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **tls},
            "basic_auth_users": {"prometheus": FAST_HASH}}  # fmt: skip


# ---------------------------------------------------------------- validation
def test_a_full_config_is_read_with_paths_relative_to_its_folder(pki: Path) -> None:
    path = write_config(pki / "web.yml", {
        **tls_users(client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.crt", min_version="TLS13"),
        "http_server_config": {"http2": True, "headers": {"X-Content-Type-Options": "nosniff",
                                                          "Strict-Transport-Security": "max-age=31536000"}},
    })  # fmt: skip
    config = load_web_config(str(path))
    assert config.tls.cert_file == str(pki / "server.crt") and config.tls.client_ca_file == str(pki / "ca.crt")
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.users == {"prometheus": FAST_HASH}
    assert config.headers == {"X-Content-Type-Options": "nosniff", "Strict-Transport-Security": "max-age=31536000"}
    assert config.summary == "TLS, client certificates (RequireAndVerifyClientCert), basic auth (1 user)"
    assert load_web_config(str(write_config(pki / "empty.yml", ""))).summary == "plain HTTP"


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({"tls_server_config": {"cert_file": "server.crt"}}, "tls_server_config.key_file"),
        ({"tls_server_config": {"key_file": "server.key", "client_auth_type": "NoClientCert"}},
         "tls_server_config.cert_file"),
        (tls_users(min_version="TLS14"), "tls_server_config.min_version"),
        (tls_users(min_version="TLS13", max_version="TLS12"), "tls_server_config.min_version"),
        (tls_users(cipher_suites=["TLS_AES_128_GCM_SHA256"]), "tls_server_config.cipher_suites"),
        (tls_users(cert="-----BEGIN CERTIFICATE-----"), "tls_server_config.cert"),
        (tls_users(client_auth_type="RequireAndVerifyClientCert"), "tls_server_config.client_ca_file"),
        (tls_users(client_ca_file="ca.crt"), "tls_server_config.client_ca_file"),
        (tls_users(client_auth_type="RequestClientCert", client_ca_file="ca.crt"),
         "tls_server_config.client_auth_type"),
        (tls_users(client_auth_type="Always"), "tls_server_config.client_auth_type"),
        (tls_users(cert_file="missing.crt"), "tls_server_config.cert_file"),
        (tls_users(key_file="ca.key"), "tls_server_config.cert_file"),  # a key that is not the certificate's
        (tls_users(client_auth_type="RequireAndVerifyClientCert", client_ca_file="nope.crt"),
         "tls_server_config.client_ca_file"),
        (tls_users(client_auth_typ="NoClientCert"), "tls_server_config.client_auth_typ"),
        ({"basic_auth_users": {"prometheus": "a-plain-password"}}, "basic_auth_users.prometheus"),
        ({"basic_auth_users": {"prometheus": "$2y$99$" + "a" * 53}}, "basic_auth_users.prometheus"),
        ({"basic_auth_users": ["prometheus"]}, "basic_auth_users"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
         "http_server_config.headers.X-Frame-Options"),
        ({"http_server_config": {"headers": {"X-Custom": "1"}}}, "http_server_config.headers.X-Custom"),
        ({"http_server_config": {"http2": "yes"}}, "http_server_config.http2"),
        ({"rate_limit": {"interval": "1s", "burst": 5}}, "rate_limit"),
        ({"tls_config": {}}, "tls_config"),
        ("just words", "expected a mapping"),
    ],
)  # fmt: skip
def test_bad_configs_are_errors_that_name_the_key(pki: Path, content: Any, key: str) -> None:
    path = write_config(pki / "web.yml", content)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as error:
        load_web_config(str(path))
    assert str(path) in str(error.value)


def test_run_refuses_a_bad_web_config_with_exit_2(pki: Path, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path / "perfsentinel.yml", {"prometheus": {"url": "http://127.0.0.1:1"},
                                                          "targets": [{"name": "t", "query": "up"}]})  # fmt: skip
    bad = write_config(pki / "web.yml", tls_users(min_version="SSL3"))
    assert main(["run", "--config", str(config), "--listen", "127.0.0.1:0", "--web.config.file", str(bad)]) == 2
    assert "tls_server_config.min_version" in capsys.readouterr().err
    missing = str(tmp_path / "missing.yml")
    assert main(["run", "--config", str(config), "--listen", "127.0.0.1:0", "--web.config.file", missing]) == 2
    assert "--web.config.file: cannot read" in capsys.readouterr().err


# ---------------------------------------------------------------- basic auth
def test_password_checks_are_cached_and_unknown_users_cost_the_same() -> None:
    auth, users = BasicAuth(cache_size=3), {"prometheus": FAST_HASH}
    for _ in range(5):
        assert auth.check(users, "prometheus", PASSWORD)
    assert auth.bcrypt_checks == 1  # a scrape every 15 s pays bcrypt once
    assert not auth.check(users, "prometheus", "wrong") and auth.bcrypt_checks == 2
    assert not auth.check(users, "mallory", PASSWORD) and auth.bcrypt_checks == 3  # a decoy hash, not a shortcut
    assert not auth.check(users, "prometheus", "x" * 100)  # longer than bcrypt's 72 bytes: refused, no error
    rotated = {"prometheus": bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()}
    assert not auth.check(rotated, "prometheus", PASSWORD)  # a changed hash is checked anew, not taken from cache
    assert auth.check(rotated, "prometheus", "new")
    assert len(auth._cache) <= 3


def test_basic_credentials_are_parsed_strictly() -> None:
    encoded = base64.b64encode(b"alice:pa:ss").decode()
    assert credentials(f"Basic {encoded}") == ("alice", "pa:ss")
    assert credentials(f"basic  {encoded} ") == ("alice", "pa:ss")
    assert credentials("Basic !!!") is None and credentials(f"Bearer {encoded}") is None and credentials(None) is None
    assert credentials("Basic " + base64.b64encode(b"no-colon").decode()) is None


# ---------------------------------------------------------------- reloading
def test_the_file_is_reread_when_it_changes_and_a_bad_version_fails_closed(pki: Path, caplog) -> None:
    path = write_config(pki / "web.yml", {"basic_auth_users": {"alice": FAST_HASH}})
    web = WebConfigFile(str(path))
    assert set(web.current().users) == {"alice"}
    write_config(path, {"basic_auth_users": {"bob": FAST_HASH}})
    assert set(web.current().users) == {"bob"}
    write_config(path, {"basic_auth_users": {"bob": "plain"}})
    with caplog.at_level(logging.ERROR, logger="exporter.webconfig"):
        for _ in range(3):
            with pytest.raises(WebConfigInvalid, match=r"basic_auth_users\.bob"):
                web.current()
    assert len(caplog.records) == 1  # logged once, not per request
    write_config(path, {"basic_auth_users": {"carol": FAST_HASH}})
    assert set(web.current().users) == {"carol"}
    write_config(path, tls_users())  # TLS is decided at start
    with pytest.raises(WebConfigInvalid, match="restart"):
        web.current()


# ---------------------------------------------------------------- the server with TLS
@pytest.fixture
def tls_server(pki: Path):
    """A MetricsServer on 127.0.0.1 with the web config ``pki``/web.yml (written by the test first)."""
    servers = []

    def start(content: dict[str, Any]) -> tuple[MetricsServer, str]:
        web = WebConfigFile(str(write_config(pki / "web.yml", content)))
        server = MetricsServer(Exposition(SelfMetrics()), "127.0.0.1", 0, web)
        server.start()
        servers.append(server)
        return server, f"127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def test_tls_and_basic_auth_protect_metrics_but_not_the_probes(pki: Path, tls_server) -> None:
    server, address = tls_server({**tls_users(), "http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    ca = str(pki / "ca.crt")
    with requests.Session() as session:  # (verify per request: REQUESTS_CA_BUNDLE would override session.verify)
        for _ in range(5):
            answer = session.get(f"https://{address}/metrics", auth=("prometheus", PASSWORD), verify=ca, timeout=10)
            assert answer.status_code == 200 and b"perfsentinel_build_info" in answer.content
        assert answer.headers["X-Frame-Options"] == "deny"
        assert server._auth.bcrypt_checks == 1
        unauthenticated = session.get(f"https://{address}/metrics", verify=ca, timeout=10)
        assert unauthenticated.status_code == 401 and unauthenticated.headers["WWW-Authenticate"] == "Basic"
        for auth in (("prometheus", "wrong"), ("root", PASSWORD)):
            assert session.get(f"https://{address}/metrics", auth=auth, verify=ca, timeout=10).status_code == 401
        assert session.get(f"https://{address}/nope", verify=ca, timeout=10).status_code == 401  # all paths but:
        assert session.get(f"https://{address}/healthz", verify=ca, timeout=10).status_code == 200
        assert session.get(f"https://{address}/readyz", verify=ca, timeout=10).status_code == 503
    plain = requests.get(f"http://{address}/metrics", auth=("prometheus", PASSWORD), timeout=10)
    assert plain.status_code == 400 and b"perfsentinel" not in plain.content  # plain HTTP to the TLS port
    assert requests.get(f"http://{address}/healthz", timeout=10).status_code == 200  # what HEALTHCHECK/probes use
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{address}/healthz", timeout=10)  # the server's certificate is not trusted by default


def test_client_certificates_are_required_and_verified(pki: Path, tls_server) -> None:
    _, address = tls_server({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                                                   "client_auth_type": "RequireAndVerifyClientCert",
                                                   "client_ca_file": "ca.crt"}})  # fmt: skip
    client = (str(pki / "client.crt"), str(pki / "client.key"))
    assert requests.get(f"https://{address}/metrics", verify=str(pki / "ca.crt"), cert=client, timeout=10).ok
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://{address}/metrics", verify=str(pki / "ca.crt"), timeout=10)
    stranger = pki / "stranger"
    stranger.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            "s.key", "-out", "s.crt", "-days", "1", "-subj", "/CN=stranger", cwd=stranger)  # fmt: skip
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://{address}/metrics", verify=str(pki / "ca.crt"),
                     cert=(str(stranger / "s.crt"), str(stranger / "s.key")), timeout=10)  # fmt: skip


def test_min_version_is_enforced(pki: Path, tls_server) -> None:
    _, address = tls_server(tls_users(min_version="TLS13"))
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = address.split(":")
    with pytest.raises(ssl.SSLError), socket.create_connection((host, int(port)), timeout=10) as raw:
        context.wrap_socket(raw, server_hostname="localhost")


def test_a_renewed_certificate_and_a_changed_config_apply_to_the_next_connection(pki: Path, tls_server) -> None:
    server, address = tls_server(tls_users())
    host, port = address.split(":")
    before = ssl.get_server_certificate((host, int(port)))
    issue(pki, "server", "/CN=renewed", "IP:127.0.0.1")  # overwrites server.crt and server.key, as cert-manager does
    after = ssl.get_server_certificate((host, int(port)))
    assert before != after and ssl.PEM_cert_to_DER_cert(after) == ssl.PEM_cert_to_DER_cert(
        (pki / "server.crt").read_text())  # fmt: skip
    url, ca = f"https://{address}/metrics", str(pki / "ca.crt")
    write_config(pki / "web.yml", {**tls_users(), "basic_auth_users": {"grafana": FAST_HASH}})
    assert requests.get(url, verify=ca, auth=("prometheus", PASSWORD), timeout=10).status_code == 401
    assert requests.get(url, verify=ca, auth=("grafana", PASSWORD), timeout=10).status_code == 200
    write_config(pki / "web.yml", {**tls_users(), "basic_auth_users": {"grafana": "oops"}})  # fails closed
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=ca, auth=("grafana", PASSWORD), timeout=10)
    assert requests.get(f"http://{address}/healthz", timeout=10).status_code == 200
    write_config(pki / "web.yml", {**tls_users(), "basic_auth_users": {"grafana": FAST_HASH}})
    assert requests.get(url, verify=ca, auth=("grafana", PASSWORD), timeout=10).status_code == 200


# ---------------------------------------------------------------- a real Prometheus scrapes perfsentinel run
def query(prometheus_url: str, promql: str) -> list[dict]:
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


@pytest.mark.integration
def test_prometheus_scrapes_perfsentinel_run_over_tls_with_basic_auth(pki: Path, tmp_path: Path,
                                                                      start_prometheus) -> None:  # fmt: skip
    port = free_port()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()  # the cost htpasswd -B uses
    write_config(pki / "web.yml", {**tls_users(), "basic_auth_users": {"prometheus": hashed}})
    scrape = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [
        {"job_name": "perfsentinel", "scheme": "https", "honor_labels": True,
         "tls_config": {"ca_file": str(pki / "ca.crt")},
         "basic_auth": {"username": "prometheus", "password": PASSWORD},
         "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        {"job_name": "prometheus", "static_configs": [{"targets": ["127.0.0.1:9"]}]},  # a target that is down
    ]}  # fmt: skip
    prometheus = start_prometheus([], config_text=yaml.safe_dump(scrape))
    config = write_config(tmp_path / "perfsentinel.yml", {
        "prometheus": {"url": prometheus.url}, "schedule": {"score_every": "2s", "fit_workers": 1},
        "targets": [{"name": "scrape_up", "query": "up"}]})  # fmt: skip
    log_path = tmp_path / "perfsentinel.log"
    with open(log_path, "w") as log:
        run = subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config), "--listen",
                                f"127.0.0.1:{port}", "--web.config.file", str(pki / "web.yml")], stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, run)  # plain HTTP works for the probes only
        url = f"https://127.0.0.1:{port}"
        wait_for(lambda: query(prometheus.url, 'up{job="perfsentinel"} == 1'), 60, "Prometheus to scrape it")
        wait_for(lambda: query(prometheus.url, "perfsentinel_build_info"), 30, "a self metric in Prometheus")
        wait_for(lambda: requests.get(f"{url}/readyz", verify=str(pki / "ca.crt"), timeout=10).status_code == 200,
                 90, "the first analysis with a successful target")  # fmt: skip
        wait_for(lambda: query(prometheus.url, 'perfsentinel_target_query_success{target="scrape_up"} == 1'), 30,
                 "the analysis in Prometheus")  # fmt: skip
        assert requests.get(f"{url}/metrics", verify=str(pki / "ca.crt"), timeout=10).status_code == 401
        wrong = requests.get(f"{url}/metrics", verify=str(pki / "ca.crt"), auth=("prometheus", "nope"), timeout=10)
        assert wrong.status_code == 401
        plain = requests.get(f"http://127.0.0.1:{port}/metrics", auth=("prometheus", PASSWORD), timeout=10)
        assert plain.status_code == 400
        scraped = requests.get(f"{url}/metrics", verify=str(pki / "ca.crt"), auth=("prometheus", PASSWORD),
                               timeout=10)  # fmt: skip
        assert scraped.status_code == 200 and b'perfsentinel_target_query_success{target="scrape_up"} 1' in (
            scraped.content)  # fmt: skip
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
    text = log_path.read_text()
    assert f"serving /metrics on https://127.0.0.1:{port} (TLS, basic auth (1 user)" in text, text
    assert "Traceback" not in text, text
