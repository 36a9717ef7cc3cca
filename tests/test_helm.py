"""The Helm chart: rendered offline with helm-python-sdk (the Helm Go library), linted, validated against the
Kubernetes 1.30 schemas, compared with golden files, and checked against the repository's rules/ and grafana/.

Regenerate the golden files after an intended chart change:
    PERFSENTINEL_UPDATE_GOLDEN=1 python -m pytest tests/test_helm.py -k golden
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from analyzer.config import build_config
from analyzer.service.sharding import ordinal_from_hostname

helm = pytest.importorskip("helm_python", reason="pip install -e '.[test]' (helm-python-sdk)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[test]'")

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "perfsentinel"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("PERFSENTINEL_UPDATE_GOLDEN") == "1"
KUBERNETES_VERSION = "1.30.0"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs: no bundled schema; their content is tested below

SHARDED_OPERATOR = {
    "shards": 3,
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboards": {"enabled": True, "namespace": "grafana", "annotations": {"grafana_folder": "Perf Sentinel"}},
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    },
    "podDisruptionBudget": {"enabled": True},
    "prometheusAuth": {"bearerToken": {"secretName": "prometheus-token"}, "ca": {"secretName": "prometheus-ca"}},
}
ALL_OPTIONS = {
    **SHARDED_OPERATOR,
    "prometheusRule": {
        "enabled": True,
        "grafanaUrl": "https://grafana.example.com/sub",
        "runbookBaseUrl": "https://git.example.com/ops/perfsentinel/blob/main/docs/runbooks",
    },
    "logFormat": "json",
    "shards": 1,
    "prometheusAuth": {"basicAuth": {"secretName": "prometheus-basic"}, "ca": {"secretName": "prometheus-ca"}},
    "env": [{"name": "TZ", "value": "UTC"}],
    "extraArgs": ["--prometheus-url=http://prometheus:9090"],
    "persistence": {"enabled": False},
}
BCRYPT_HASH = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"
WEB_CONFIG = {
    "webConfig": {"tls": {"secretName": "ps-tls", "minVersion": "TLS13", "clientCA": {"secretName": "ps-client-ca"}},
                  "basicAuth": {"users": {"prometheus": BCRYPT_HASH}},
                  "headers": {"X-Content-Type-Options": "nosniff"}},
    "serviceMonitor": {"enabled": True, "basicAuth": {"secretName": "ps-scrape"}},
}  # fmt: skip
CONFIGS = {"default": {}, "sharded-operator": SHARDED_OPERATOR, "all-options": ALL_OPTIONS, "web-config": WEB_CONFIG}


# ---------------------------------------------------------------- helpers
def render(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    return helm.Chart.load(chart).render(values, name="ps", namespace="monitoring")


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for name, text in sorted(rendered.items()):
        if not name.endswith("NOTES.txt"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
    assert len(found) == 1
    return found[0]


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    configmap = next(d for d in by_kind(docs, "ConfigMap") if "perfsentinel.yml" in d["data"])
    return yaml.safe_load(configmap["data"]["perfsentinel.yml"])


def fixture_chart(tmp_path: Path) -> Path:
    """The chart with fixed stand-ins for rules/ and grafana/, so golden files track only the chart."""
    chart = tmp_path / "perfsentinel"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("files"))
    shutil.copytree(GOLDEN / "chart-files", chart / "files")
    return chart


def golden_text(rendered: dict[str, str]) -> str:
    parts = [f"# Source: {name}\n{text.strip()}\n" for name, text in sorted(rendered.items()) if text.strip()]
    return "---\n".join(parts)


def shipped_rule_groups() -> list[dict[str, Any]]:
    groups = []
    for path in sorted([*(REPO / "rules").glob("*.yml"), *(REPO / "rules").glob("*.yaml")]):
        groups += (yaml.safe_load(path.read_text()) or {}).get("groups", [])
    return groups


# ---------------------------------------------------------------- lint and schemas
@pytest.mark.parametrize("config", CONFIGS)
def test_lint_strict_is_clean(config: str) -> None:
    report = helm.lint(CHART, CONFIGS[config], strict=True, namespace="monitoring", kube_version=KUBERNETES_VERSION)
    assert report["errors"] == []
    # severity 1 is informational; the only one is "icon is recommended" (the project has no icon)
    assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("config", CONFIGS)
def test_manifests_are_valid_kubernetes_objects(config: str) -> None:
    docs = manifests(render(CONFIGS[config]))
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["kind"] in OPERATOR_KINDS
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shards": 0}, "/shards"),
        ({"config": {"listen": "0.0.0.0:1"}}, "/config"),
        ({"config": {"prometheus": {"url": "prometheus:9090"}}}, "/config/prometheus/url"),
        ({"persistence": {"enabled": True, "size": "lots"}}, "/persistence/size"),
        ({"prometheusAuth": {"bearerToken": {"secretName": "s", "token": "inline-secret"}}}, "token"),
        ({"serviceMonitr": {"enabled": True}}, "serviceMonitr"),
        ({"config": {"prometheus": {"bearer_token": "inline-secret"}}}, "/config/prometheus"),
        ({"config": {"prometheus": {"basic_auth": {"username": "u", "password": "inline"}}}}, "basic_auth"),
        ({"webConfig": {"basicAuth": {"users": {"prometheus": "a-password"}}}}, "/webConfig/basicAuth/users"),
        ({"webConfig": {"headers": {"X-Powered-By": "perfsentinel"}}}, "/webConfig/headers"),
        ({"webConfig": {"tls": {"secretName": "t", "minVersion": "SSL3"}}}, "/webConfig/tls/minVersion"),
        ({"prometheusRule": {"grafanaUrl": "grafana:3000"}}, "/prometheusRule/grafanaUrl"),
        ({"prometheusRule": {"runbookBaseUrl": "wiki/runbooks"}}, "/prometheusRule/runbookBaseUrl"),
        ({"logFormat": "xml"}, "/logFormat"),
    ],
)
def test_values_schema_refuses_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(values)


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


# ---------------------------------------------------------------- golden files
@pytest.mark.parametrize("config", ["default", "sharded-operator", "web-config"])
def test_golden_render(config: str, tmp_path: Path) -> None:
    text = golden_text(render(CONFIGS[config], fixture_chart(tmp_path)))
    golden = GOLDEN / f"helm-{config}.yaml"
    if UPDATE_GOLDEN or not golden.exists():
        golden.write_text(text)
        if not UPDATE_GOLDEN:
            pytest.fail(f"{golden.name} did not exist and was written: review and commit it")
    assert text == golden.read_text(), f"chart output changed: review, then regenerate ({__doc__.splitlines()[-1]})"


# ---------------------------------------------------------------- behaviour
def test_default_is_one_deployment_with_a_claim_for_the_baselines() -> None:
    docs = manifests(render({}))
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # one RWO volume, never two pods on it
    assert by_kind(docs, "StatefulSet") == []
    claim = one(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert not {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget"} & {d["kind"] for d in docs}
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--shard") for a in args)


def test_shards_make_a_statefulset_whose_pods_take_their_index_from_the_ordinal() -> None:
    docs = manifests(render({"shards": 4}))
    statefulset = one(docs, "StatefulSet")
    assert by_kind(docs, "Deployment") == [] and by_kind(docs, "PersistentVolumeClaim") == []
    assert statefulset["spec"]["replicas"] == 4
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shard-count=4" in args and "--shard-index-from-hostname" in args
    # pods are named <statefulset>-<ordinal>: exactly what --shard-index-from-hostname parses
    assert statefulset["metadata"]["name"] == "ps-perfsentinel"
    assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]] == ["state"]
    headless = [s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [statefulset["spec"]["serviceName"]]


def test_long_release_names_keep_statefulset_and_pod_names_valid() -> None:
    rendered = helm.Chart.load(CHART).render({"shards": 3}, name="a-very-long-release-name-for-the-analytics-team",
                                             namespace="monitoring")  # fmt: skip
    statefulset = one(manifests(rendered), "StatefulSet")
    name = statefulset["metadata"]["name"]
    assert len(name) <= 52 and not name.endswith("-")  # the controller-revision-hash label adds 11 characters
    assert ordinal_from_hostname(f"{name}-2") == 2


def test_helm_test_pod_checks_health_through_the_service() -> None:
    docs = manifests(render({}))
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service")
    assert pod["spec"]["containers"][0]["command"][-1] == f"http://{service['metadata']['name']}:9977/healthz"
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_pod_runs_non_root_read_only_without_capabilities_and_probes_health() -> None:
    for values in ({}, {"shards": 2}):
        pod = workload(manifests(render(values)))["spec"]["template"]["spec"]
        container = pod["containers"][0]
        security = container["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/var/lib/perfsentinel", "/tmp"}


def test_rendered_config_is_accepted_by_perfsentinel_and_credentials_are_mounted_files() -> None:
    auth = {"bearerToken": {"secretName": "tok", "key": "t"}, "ca": {"secretName": "ca", "key": "root.pem"}}
    docs = manifests(render(ALL_OPTIONS | {"prometheusAuth": auth}))
    raw = rendered_config(docs)
    config = build_config(raw, env={})
    assert config.state_dir == "/var/lib/perfsentinel" and config.listen == "0.0.0.0:9977"
    container = workload(docs)["spec"]["template"]["spec"]["containers"][0]
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    for path in (config.prometheus.bearer_token_file, config.prometheus.ca_file):
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(Path(path).parent))
        items = volumes[mount["name"]]["secret"]["items"]
        assert [i["path"] for i in items] == [Path(path).name]
    assert {v["secret"]["secretName"] for v in volumes.values() if "secret" in v} == {"tok", "ca"}
    assert "inline" not in json.dumps(raw)


def test_basic_auth_username_comes_from_the_secret_through_the_environment() -> None:
    docs = manifests(render({"prometheusAuth": {"basicAuth": {"secretName": "prom-basic"}}}))
    raw = rendered_config(docs)
    config = build_config(raw, env={"PERFSENTINEL_PROMETHEUS_USERNAME": "reader"})
    assert config.prometheus.basic_auth.username == "reader"
    assert config.prometheus.basic_auth.password_file == "/etc/perfsentinel/secrets/basic-auth/password"
    env = workload(docs)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"] == {"name": "prom-basic", "key": "username"}


def test_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        return workload(manifests(render(values)))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum({"config": {"timezone": "Europe/Berlin"}})


def test_service_monitor_honours_the_exported_labels() -> None:
    docs = manifests(render(SHARDED_OPERATOR))
    monitor = one(docs, "ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["honorLabels"] is True and endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    selected = [s for s in by_kind(docs, "Service") if selector <= s["metadata"]["labels"].items()]
    assert len(by_kind(docs, "Service")) == 2  # the ClusterIP one and the StatefulSet's headless one
    assert [s["spec"].get("clusterIP") for s in selected] == [None]  # each pod scraped once, not twice


def mounted_file(pod: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret and key that ``path`` in the perfsentinel container comes from."""
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(Path(path).parent))
    assert mount["readOnly"] is True and "subPath" not in mount  # a folder: renewed Secrets reach the pod
    secret = next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]
    item = next(i for i in secret["items"] if i["path"] == Path(path).name)
    return secret["secretName"], item["key"]


def test_web_config_is_a_secret_perfsentinel_accepts_with_every_file_mounted(tmp_path: Path) -> None:
    from exporter.webconfig import load_web_config
    from tests.test_webconfig import make_pki

    docs = manifests(render(WEB_CONFIG))
    pod = workload(docs)["spec"]["template"]["spec"]
    flag = next(a for a in pod["containers"][0]["args"] if a.startswith("--web.config.file="))
    web_file = flag.split("=", 1)[1]
    secret = next(d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == mounted_file(pod, web_file)[0])
    text = secret["stringData"][mounted_file(pod, web_file)[1]]
    raw = yaml.safe_load(text)
    assert raw["basic_auth_users"] == {"prometheus": BCRYPT_HASH}
    pki, mounted = make_pki(tmp_path / "pki"), {}
    for key, local in (("cert_file", "server.crt"), ("key_file", "server.key"), ("client_ca_file", "ca.crt")):
        mounted[key] = mounted_file(pod, raw["tls_server_config"][key])
        text = text.replace(raw["tls_server_config"][key], str(pki / local))
    assert mounted == {"cert_file": ("ps-tls", "tls.crt"), "key_file": ("ps-tls", "tls.key"),
                       "client_ca_file": ("ps-client-ca", "ca.crt")}  # fmt: skip
    (tmp_path / "web-config.yml").write_text(text)
    config = load_web_config(str(tmp_path / "web-config.yml"))
    assert config.summary == "TLS, client certificates (RequireAndVerifyClientCert), basic auth (1 user)"
    assert config.tls.min_version == "TLS13" and config.headers == {"X-Content-Type-Options": "nosniff"}
    container = pod["containers"][0]  # the probes need no credentials and answer plain HTTP on the TLS port
    assert container["livenessProbe"]["httpGet"].get("scheme", "HTTP") == "HTTP"
    assert container["readinessProbe"]["httpGet"].get("scheme", "HTTP") == "HTTP"


def test_service_monitor_scrapes_https_with_basic_auth_when_the_web_config_asks() -> None:
    endpoint = one(manifests(render(WEB_CONFIG)), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "ps-tls", "key": "ca.crt"}},
                                     "serverName": "ps-perfsentinel.monitoring.svc"}  # fmt: skip
    assert endpoint["basicAuth"] == {"username": {"name": "ps-scrape", "key": "username"},
                                     "password": {"name": "ps-scrape", "key": "password"}}  # fmt: skip
    own = {"ca": {"configMap": {"name": "ca", "key": "ca.crt"}}, "cert": {"secret": {"name": "c", "key": "tls.crt"}},
           "keySecret": {"name": "c", "key": "tls.key"}}  # fmt: skip
    values = {**WEB_CONFIG, "serviceMonitor": {"enabled": True, "tlsConfig": own}}
    assert one(manifests(render(values)), "ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"] == own
    plain = one(manifests(render(SHARDED_OPERATOR)), "ServiceMonitor")["spec"]["endpoints"][0]
    assert not {"scheme", "tlsConfig", "basicAuth"} & set(plain)


def test_an_existing_web_config_secret_is_mounted_instead_of_the_rendered_one() -> None:
    values = {"webConfig": {"existingSecret": "my-web-config", "existingSecretKey": "web.yml"}}
    docs = manifests(render(values))
    pod = workload(docs)["spec"]["template"]["spec"]
    assert "--web.config.file=/etc/perfsentinel/web/config/web.yml" in pod["containers"][0]["args"]
    assert mounted_file(pod, "/etc/perfsentinel/web/config/web.yml") == ("my-web-config", "web.yml")
    assert by_kind(docs, "Secret") == []
    default = workload(manifests(render({})))["spec"]["template"]["spec"]
    assert not any(a.startswith("--web.config.file") for a in default["containers"][0]["args"])


# ---------------------------------------------------------------- one source of truth: rules/ and grafana/
def test_chart_reads_the_repository_folders_through_symlinks() -> None:
    """files/rules and files/grafana are links, not copies: the chart cannot drift from the repository."""
    for name in ("rules", "grafana"):
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a symlink to ../../../{name}"
        assert link.resolve() == (REPO / name).resolve()


def test_prometheus_rule_carries_every_group_of_the_rules_folder() -> None:
    rule = one(manifests(render({"prometheusRule": {"enabled": True}})), "PrometheusRule")
    assert rule["spec"]["groups"] == shipped_rule_groups()


def test_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: apt-get install -y prometheus")
    rule = one(manifests(render({"prometheusRule": {"enabled": True}})), "PrometheusRule")
    if not rule["spec"]["groups"]:
        pytest.skip("rules/ has no rule groups yet")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_fixture_rules_and_dashboards_render_as_expected(tmp_path: Path) -> None:
    docs = manifests(render(SHARDED_OPERATOR, fixture_chart(tmp_path)))
    rule = one(docs, "PrometheusRule")
    assert [g["name"] for g in rule["spec"]["groups"]] == ["golden-example"]  # the groups-less YAML is skipped
    dashboards = [d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    assert [d["metadata"]["name"] for d in dashboards] == ["ps-perfsentinel-dashboard-example-overview"]
    assert dashboards[0]["metadata"]["namespace"] == "grafana"
    fixture = GOLDEN / "chart-files" / "grafana" / "Example_Overview.json"
    assert json.loads(dashboards[0]["data"]["Example_Overview.json"]) == json.loads(fixture.read_text())


def test_one_dashboard_configmap_per_grafana_json_with_the_sidecar_label() -> None:
    docs = manifests(render({"grafanaDashboards": {"enabled": True}}))
    dashboards = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    shipped = {p.name: p.read_text() for p in sorted((REPO / "grafana").rglob("*.json"))}
    rendered = {key: text for d in dashboards for key, text in d["data"].items()}
    assert rendered == shipped
    assert len({d["metadata"]["name"] for d in dashboards}) == len(dashboards)


# ---------------------------------------------------------------- links in the alerts
def rule_annotations(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    rule = one(manifests(render({"prometheusRule": {"enabled": True, **values}})), "PrometheusRule")
    return {r["alert"]: r["annotations"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def test_alert_links_follow_the_grafana_and_runbook_base_urls(tmp_path: Path) -> None:
    """grafanaUrl replaces the rule files' http://localhost:3000 in dashboard_url and runbook_url; runbookBaseUrl
    makes every runbook_url <base>/<alert>.md. The rendered rules pass the shipped promtool unit tests with the
    expected URLs rewritten the same way."""
    shipped = rule_annotations({})
    grafana = "https://grafana.example.com/sub"
    in_grafana = rule_annotations({"grafanaUrl": grafana + "/"})
    elsewhere = rule_annotations({"grafanaUrl": grafana, "runbookBaseUrl": "https://git.example.com/rb/"})
    assert shipped.keys() == in_grafana.keys() == elsewhere.keys()
    for alert, links in shipped.items():
        assert "localhost:3000" not in str(in_grafana[alert]) and "localhost:3000" not in str(elsewhere[alert])
        assert in_grafana[alert]["runbook_url"] == links["runbook_url"].replace("http://localhost:3000", grafana)
        assert elsewhere[alert]["runbook_url"] == f"https://git.example.com/rb/{alert}.md"
        if "dashboard_url" in links:
            assert elsewhere[alert]["dashboard_url"] == links["dashboard_url"].replace("http://localhost:3000", grafana)
        assert {k: v for k, v in in_grafana[alert].items() if not k.endswith("_url")} == {
            k: v for k, v in links.items() if not k.endswith("_url")}  # fmt: skip

    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: apt-get install -y prometheus")
    rule = one(manifests(render({"prometheusRule": {"enabled": True, "grafanaUrl": grafana}})), "PrometheusRule")
    (tmp_path / "tests").mkdir()
    for group in rule["spec"]["groups"]:
        (tmp_path / f"{group['name']}.yml").write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
    for test in sorted((REPO / "rules" / "tests").glob("*.yml")):
        (tmp_path / "tests" / test.name).write_text(test.read_text().replace("http://localhost:3000", grafana))
    done = subprocess.run(["promtool", "test", "rules", *sorted(p.name for p in (tmp_path / "tests").glob("*.yml"))],
                          cwd=tmp_path / "tests", capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr


def test_log_format_json_is_passed_to_perfsentinel() -> None:
    args = workload(manifests(render({"logFormat": "json"})))["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["--log-level=INFO", "--log-format=json", "run"]
    default = workload(manifests(render({})))["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(arg.startswith("--log-format") for arg in default)
