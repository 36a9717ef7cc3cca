import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analyzer.config import ConfigError, build_config, load_config, with_prometheus_url

MINIMAL = """
prometheus:
  url: http://127.0.0.1:9090
targets:
  - name: api_latency_p95
    query: histogram_quantile(0.95, sum by (le, service) (rate(http_request_duration_seconds_bucket[5m])))
    direction: lower_is_better
"""


def config_from(text: str, env: dict | None = None):
    return build_config(yaml.safe_load(text), env or {})


def error_of(text: str, env: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config_from(text, env)
    return caught.value


def test_minimal_config_is_valid_and_defaulted():
    config = config_from(MINIMAL)
    target = config.targets[0]
    assert config.prometheus.url == "http://127.0.0.1:9090"
    assert target.direction == "lower_is_better"
    assert (target.step, target.history, target.min_history) == (300, 28 * 86400, 2 * 86400)
    assert (config.schedule.score_every, config.schedule.refit_every) == (60, 3600)
    assert config.timezone == "UTC" and config.listen.endswith(":9977")


@pytest.mark.parametrize(
    ("kind", "direction"),
    [("latency", "lower_is_better"), ("throughput", "higher_is_better"), ("error_rate", "lower_is_better"),
     ("resource", "lower_is_better"), ("accuracy", "higher_is_better"), (None, "both")],
)  # fmt: skip
def test_kind_sets_default_direction(kind, direction):
    kind_item = f", kind: {kind}" if kind else ""
    text = "prometheus: {url: 'http://p:9090'}\ntargets:\n  - {name: t, query: up" + kind_item + "}"
    assert config_from(text).targets[0].direction == direction


def test_explicit_direction_wins_over_kind():
    text = "prometheus: {url: 'http://p:9090'}\ntargets: [{name: t, query: up, kind: latency, direction: both}]"
    assert config_from(text).targets[0].direction == "both"


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("prometheus: {url: 'http://p'}\ntargets: [{name: t, query: up, direction: down}]", "targets[0].direction",
         "must be one of"),
        ("prometheus: {url: 'http://p'}\ntargets: [{name: t, query: up, stepp: 5m}]", "targets[0].stepp",
         "unknown key"),
        ("prometheus: {url: 'http://p', tiemout: 5s}\ntargets: [{name: t, query: up}]", "prometheus.tiemout",
         "unknown key"),
        ("prometheus: {url: 'http://p'}\ntargets: [{name: t}]", "targets[0].query", "required"),
        ("prometheus: {url: 'http://p'}\ntargets: [{name: t, query: up, step: five}]", "targets[0].step", "duration"),
        ("prometheus: {url: 'ftp://p'}\ntargets: [{name: t, query: up}]", "prometheus.url", "http"),
        ("prometheus: {url: 'http://p'}\ntargets: []", "targets", "non-empty"),
        ("prometheus: {url: 'http://p'}\ntimezone: Mars/Base\ntargets: [{name: t, query: up}]", "timezone", "timezone"),
        ("prometheus: {url: 'http://p'}\ntargets: [{name: t, query: up}, {name: t, query: up}]", "targets[1].name",
         "duplicate"),
        ("prometheus: {url: 'http://p'}\nschedule: {score_every: 0s}\ntargets: [{name: t, query: up}]",
         "schedule.score_every", "positive"),
        ("prometheus: {url: 'http://p'}\ndefaults: {band_sigmas: -1}\ntargets: [{name: t, query: up}]",
         "defaults.band_sigmas", ">="),
        ("prometheus: {url: 'http://p'}\ntargets: [{name: t, query: up, min_history: 30d}]", "targets[0].min_history",
         "longer"),
    ],
)  # fmt: skip
def test_errors_name_the_key_path_and_problem(text, path, problem):
    error = error_of(text)
    assert error.path == path
    assert problem in error.problem


def test_env_substitution_with_default_and_missing_variable():
    text = "prometheus: {url: '${PROM_URL}', bearer_token: '${TOKEN:-none}'}\ntargets: [{name: t, query: up}]"
    config = config_from(text, {"PROM_URL": "https://prom.example:9090"})
    assert config.prometheus.url == "https://prom.example:9090"
    assert config.prometheus.bearer_token == "none"
    assert error_of(text).path == "prometheus.url"
    assert "PROM_URL" in error_of(text).problem


def test_defaults_section_applies_to_every_target_and_target_wins():
    text = """
prometheus: {url: 'http://p'}
defaults: {step: 1m, history: 7d}
targets: [{name: a, query: up}, {name: b, query: up, step: 30s}]
"""
    a, b = config_from(text).targets
    assert (a.step, a.history, b.step, b.history) == (60, 7 * 86400, 30, 7 * 86400)


def test_prometheus_url_override():
    config = with_prometheus_url(config_from(MINIMAL), "http://other:9090/")
    assert config.prometheus.url == "http://other:9090"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True)


def test_validate_config_command_exit_codes(tmp_path: Path):
    good = tmp_path / "good.yml"
    good.write_text(MINIMAL)
    bad = tmp_path / "bad.yml"
    bad.write_text(MINIMAL.replace("lower_is_better", "sideways"))
    assert run_cli("validate-config", str(good)).returncode == 0
    result = run_cli("validate-config", str(bad))
    assert result.returncode == 2
    assert "targets[0].direction" in result.stderr and "sideways" in result.stderr
    missing = run_cli("validate-config", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_invalid_yaml_is_a_config_error(tmp_path: Path):
    path = tmp_path / "broken.yml"
    path.write_text("prometheus: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))


@pytest.mark.parametrize(("written", "value"), [("1e-6", 1e-6), ("1.0e-6", 1e-6), ("5E-5", 5e-5), ("0.0001", 1e-4)])
def test_a_number_in_exponent_notation_is_a_number(written, value):
    """PyYAML reads YAML 1.1, where ``1e-6`` without a dot is a string."""
    text = MINIMAL + f"    fdr: {written}\n"
    assert config_from(text).targets[0].fdr == pytest.approx(value)


def test_exponent_notation_still_meets_the_limits_and_the_integer_keys():
    assert "must be <= 0.5" in str(error_of(MINIMAL + "    fdr: 1e3\n"))
    assert "expected an integer, got 1000.0" in str(error_of(MINIMAL + "    persistence: 1e3\n"))
    assert "expected a number, got 'e-6'" in str(error_of(MINIMAL + "    fdr: e-6\n"))


def test_a_config_error_survives_pickling_as_from_a_worker_process():
    error = error_of(MINIMAL + "    fdr: high\n")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.path, again.problem, str(again)) == (ConfigError, error.path, error.problem, str(error))


def test_split_correction_is_a_boolean_named_in_its_error() -> None:
    assert config_from(MINIMAL).targets[0].split_correction is False
    assert config_from(MINIMAL + "    split_correction: true\n").targets[0].split_correction is True
    error = error_of(MINIMAL + "    split_correction: maybe\n")
    assert "split_correction" in str(error) and "expected true or false" in str(error)
