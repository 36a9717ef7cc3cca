"""The YAML configuration: loading, ${ENV} substitution, validation and defaults.

Every error names the key path (``targets[1].direction``) and what is wrong with it, unknown keys included.
Fields are declared once in tables (``PROMETHEUS_FIELDS``, ``TARGET_FIELDS`` ...) so adding a key is one line
plus one dataclass attribute.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from analyzer.durations import parse_duration
from analyzer.options import TESTS, ProphetOptions, SeverityThresholds

DEFAULT_LISTEN = "127.0.0.1:9977"  # secure by default; containers pass --listen 0.0.0.0:9977
STRATEGIES = ("manual", "time_based", "on_improvement", "on_drift", "adaptive")  # see analyzer.state.lifecycle
DIRECTIONS = ("lower_is_better", "higher_is_better", "both")
KIND_DIRECTIONS = {
    "latency": "lower_is_better",
    "error_rate": "lower_is_better",
    "resource": "lower_is_better",
    "throughput": "higher_is_better",
    "accuracy": "higher_is_better",
}
SEASONALITIES = ("auto", "daily", "weekly", "none")
MODELS = ("auto", "stl", "mstl", "profile", "prophet")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is ``"<key path>: <problem>"``."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple:
        """Pickled with both arguments, so an error raised in a worker process reaches the caller intact."""
        return type(self), (self.path, self.problem)


class ConfigErrors(ConfigError):
    """Every problem one pass over a file found: ``errors`` in the order of the file's sections, ``str()`` one per
    line; ``path`` and ``problem`` are the first one's, so code that expects one ConfigError keeps working."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        flat = [single for error in errors for single in each_error(error)]
        ValueError.__init__(self, "\n".join(map(str, flat)))
        self.errors = flat
        self.path, self.problem = flat[0].path, flat[0].problem

    def __reduce__(self) -> tuple:
        return type(self), (self.errors,)


def each_error(error: ConfigError) -> list[ConfigError]:
    return error.errors if isinstance(error, ConfigErrors) else [error]


class Problems:
    """Collects configuration problems, so that a file with several is reported in one go rather than one per
    run."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.extend(each_error(error))

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a ConfigError raised inside and go on after the block."""
        try:
            yield
        except ConfigError as exc:
            self.add(exc)

    def raise_any(self) -> None:
        """Raise the one problem as it is, several as ConfigErrors, none: return."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


# ---------------------------------------------------------------- value checkers
Checker = Callable[[Any, str], Any]


def as_str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, f"expected a non-empty string, got {value!r}")
    return value


def as_optional_str(value: Any, path: str) -> str | None:
    return None if value is None else as_str(value, path)


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {value!r}")
    return value


def as_duration(value: Any, path: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None
    if seconds <= 0:
        raise ConfigError(path, f"duration must be positive, got {value!r}")
    return seconds


# YAML 1.1, which PyYAML reads, has no float without a dot: ``fdr: 1e-6`` arrives as the string "1e-6"
EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def number(minimum: float | None = None, maximum: float | None = None, integer: bool = False) -> Checker:
    def check(value: Any, path: str) -> float:
        if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)  # as YAML 1.2 reads it
        wanted = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ConfigError(path, f"expected {'an integer' if integer else 'a number'}, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(path, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(path, f"must be <= {maximum}, got {value}")
        return value

    return check


def choice(*allowed: str) -> Checker:
    def check(value: Any, path: str) -> str:
        if value not in allowed:
            raise ConfigError(path, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return check


def optional(checker: Checker) -> Checker:
    def check(value: Any, path: str) -> Any:
        return None if value is None else checker(value, path)

    return check


def as_str_map(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping of strings, got {type(value).__name__}")
    return {str(k): as_str(v, f"{path}.{k}") for k, v in value.items()}


def as_timezone(value: Any, path: str) -> str:
    try:
        ZoneInfo(as_str(value, path))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(path, f"unknown IANA timezone {value!r} (e.g. UTC, Europe/Berlin)") from None
    return value


def as_listen(value: Any, path: str) -> str:
    host, sep, port = as_str(value, path).rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(path, f"expected HOST:PORT, got {value!r}")
    return value


def as_url(value: Any, path: str) -> str:
    if not re.match(r"^https?://[^/\s]+", as_str(value, path)):
        shown = re.sub(r"(://[^:@/\s]*:)[^/\s]*@", r"\1***@", value)  # never echo a password
        raise ConfigError(path, f"expected an http:// or https:// URL, got {shown!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Field:
    checker: Checker
    default: Any = None
    required: bool = False


def check_mapping(raw: Any, spec: Mapping[str, Field], path: str, problems: Problems | None = None
                  ) -> dict[str, Any]:  # fmt: skip
    """Validate ``raw`` against ``spec``: unknown keys, missing required keys, per-key checks. Every problem is
    reported: raised together at the end, or added to ``problems`` when given (the keys that failed are then
    missing from the values returned)."""
    found = Problems() if problems is None else problems
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        found.add(ConfigError(path, f"expected a mapping, got {type(raw).__name__}"))
        if problems is None:
            found.raise_any()
        return {}
    prefix = f"{path}." if path else ""
    known = ", ".join(sorted(spec))
    for name in sorted(set(raw) - set(spec), key=str):
        found.add(ConfigError(f"{prefix}{name}", f"unknown key (known keys: {known})"))
    values: dict[str, Any] = {}
    for key, rule in spec.items():
        if key not in raw or raw[key] is None:
            if rule.required:
                found.add(ConfigError(f"{prefix}{key}", "required key is missing"))
            else:
                values[key] = rule.default
        else:
            with found.collect():
                values[key] = rule.checker(raw[key], f"{prefix}{key}")
    if problems is None:
        found.raise_any()
    return values


# ---------------------------------------------------------------- sections
@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str | None = None
    password_file: str | None = None


BASIC_AUTH_FIELDS = {
    "username": Field(as_str, required=True),
    "password": Field(as_optional_str),
    "password_file": Field(as_optional_str),
}


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None
    ca_file: str | None = None
    tls_verify: bool = True
    timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_points_per_request: int = 11000
    max_samples_per_request: int = 2_000_000
    max_response_bytes: int = 256 * 2**20
    compression: bool = False


PROMETHEUS_FIELDS = {
    "url": Field(as_url, required=True),
    "bearer_token": Field(as_optional_str),
    "bearer_token_file": Field(as_optional_str),
    "basic_auth": Field(lambda v, p: BasicAuth(**check_mapping(v, BASIC_AUTH_FIELDS, p))),
    "ca_file": Field(as_optional_str),
    "tls_verify": Field(as_bool, True),
    "timeout": Field(as_duration, 30.0),
    "headers": Field(as_str_map, {}),
    "retries": Field(number(0, 20, integer=True), 4),
    "backoff": Field(as_duration, 0.5),
    "max_backoff": Field(as_duration, 10.0),
    "max_points_per_request": Field(number(10, 11000, integer=True), 11000),
    "max_samples_per_request": Field(number(10_000, 50_000_000, integer=True), 2_000_000),
    "max_response_bytes": Field(number(2**20, 2**34, integer=True), 256 * 2**20),
    "compression": Field(as_bool, False),
}


@dataclass(frozen=True)
class ScheduleConfig:
    score_every: float = 60.0
    refit_every: float = 3600.0
    fit_workers: int = 0  # 0: one per CPU core
    fit_timeout: float = 120.0


SCHEDULE_FIELDS = {
    "score_every": Field(as_duration, 60.0),
    "refit_every": Field(as_duration, 3600.0),
    "fit_workers": Field(number(0, 256, integer=True), 0),
    "fit_timeout": Field(as_duration, 120.0),
}


GATE_TIERS = ("minor", "significant", "critical")
BUDGET_STATISTICS = ("mean", "median", "p90", "p95", "p99", "min", "max", "last")


@dataclass(frozen=True)
class Budget:
    """An absolute limit for ``perfsentinel check``: ``statistic`` of the candidate window within [min, max]."""

    statistic: str = "mean"
    max: float | None = None
    min: float | None = None


BUDGET_FIELDS = {
    "statistic": Field(choice(*BUDGET_STATISTICS), "mean"),
    "max": Field(optional(number()), None),
    "min": Field(optional(number()), None),
}


@dataclass(frozen=True)
class CheckSettings:
    """Per-target settings of ``perfsentinel check`` (None: take the command line's)."""

    fail_on: str | None = None
    budget: Budget | None = None
    enabled: bool = True


def as_check_settings(value: Any, path: str) -> CheckSettings:
    values = check_mapping(value, CHECK_FIELDS, path)
    budget = values["budget"]
    if budget is not None and budget.max is None and budget.min is None:
        raise ConfigError(f"{path}.budget", "give max, min or both")
    return CheckSettings(**values)


CHECK_FIELDS = {
    "fail_on": Field(optional(choice(*GATE_TIERS)), None),
    "budget": Field(lambda v, p: Budget(**check_mapping(v, BUDGET_FIELDS, p)), None),
    "enabled": Field(as_bool, True),
}


SEVERITY_FIELDS = {
    "minor": Field(number(0), 5.0),
    "significant": Field(number(0), 15.0),
    "critical": Field(number(0), 30.0),
}


def as_severity(value: Any, path: str) -> SeverityThresholds:
    """Change in % of the expected value at which each regression tier starts."""
    try:
        return SeverityThresholds(**check_mapping(value, SEVERITY_FIELDS, path))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(path, str(exc)) from None


PROPHET_FIELDS = {
    "country_holidays": Field(as_optional_str),
    "changepoint_prior_scale": Field(number(1e-4, 10), 0.05),
    "seasonality_prior_scale": Field(number(1e-4, 100), 10.0),
    "seasonality_mode": Field(choice("additive", "multiplicative"), "additive"),
    "uncertainty_samples": Field(number(0, 2000, integer=True), 0),
    "fit_timeout": Field(as_duration, 60.0),
    "fit_resolution": Field(as_duration, 1800.0),
}


def as_prophet_options(value: Any, path: str) -> ProphetOptions:
    return ProphetOptions(**check_mapping(value, PROPHET_FIELDS, path))


@dataclass(frozen=True)
class TargetConfig:
    name: str
    query: str
    direction: str = "both"
    kind: str | None = None
    step: float = 300.0
    max_series: int = 10_000
    history: float = 28 * 86400.0
    seasonality: str = "auto"
    model: str = "auto"
    min_history: float = 2 * 86400.0
    max_gap_ratio: float = 0.8
    band_sigmas: float = 4.0
    min_abs_deviation: float = 0.0
    min_rel_deviation: float = 0.0
    score_lookback: float = 900.0
    check: CheckSettings = CheckSettings()
    drift_window: float = 3600.0
    regression_window: float = 6 * 3600.0
    test: str = "mannwhitney"
    persistence: int = 3
    fdr: float = 0.0001
    split_correction: bool = False
    max_notifications_per_day: float = 0.1  # per series, all alerts together (analyzer.detection.budget)
    severity: SeverityThresholds = SeverityThresholds()
    events_query: str | None = None
    update_strategy: str = "adaptive"
    update_every: float = 7 * 86400.0
    retention: float = 7 * 86400.0
    prophet: ProphetOptions = ProphetOptions()


TARGET_FIELDS = {
    "name": Field(as_str, required=True),
    "query": Field(as_str, required=True),
    "direction": Field(optional(choice(*DIRECTIONS))),
    "kind": Field(optional(choice(*KIND_DIRECTIONS))),
    "step": Field(as_duration, 300.0),
    "max_series": Field(number(1, 10_000_000, integer=True), 10_000),
    "history": Field(as_duration, 28 * 86400.0),
    "seasonality": Field(choice(*SEASONALITIES), "auto"),
    "model": Field(choice(*MODELS), "auto"),
    "min_history": Field(as_duration, 2 * 86400.0),
    "max_gap_ratio": Field(number(0, 1), 0.8),
    "band_sigmas": Field(number(0.5, 20), 4.0),
    "min_abs_deviation": Field(number(0), 0.0),
    "min_rel_deviation": Field(number(0), 0.0),
    "score_lookback": Field(as_duration, 900.0),
    "check": Field(as_check_settings, CheckSettings()),
    "drift_window": Field(as_duration, 3600.0),
    "regression_window": Field(as_duration, 6 * 3600.0),
    "test": Field(choice(*TESTS), "mannwhitney"),
    "persistence": Field(number(1, 1000, integer=True), 3),
    "fdr": Field(number(1e-9, 0.5), 0.0001),
    "split_correction": Field(as_bool, False),
    "max_notifications_per_day": Field(number(0.001, 100), 0.1),
    "severity": Field(as_severity, SeverityThresholds()),
    "events_query": Field(as_optional_str),
    "update_strategy": Field(choice(*STRATEGIES), "adaptive"),
    "update_every": Field(as_duration, 7 * 86400.0),
    "retention": Field(as_duration, 7 * 86400.0),
    "prophet": Field(lambda v, p: as_prophet_options(v, p), ProphetOptions()),
}
TARGET_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:.-]*$")


@dataclass(frozen=True)
class Config:
    prometheus: PrometheusConfig
    targets: tuple[TargetConfig, ...]
    schedule: ScheduleConfig = ScheduleConfig()
    timezone: str = "UTC"
    listen: str = DEFAULT_LISTEN
    state_dir: str | None = None

    def target(self, name: str) -> TargetConfig:
        return next(t for t in self.targets if t.name == name)


TOP_FIELDS = {
    "prometheus": Field(lambda v, p: v, required=True),
    "targets": Field(lambda v, p: v, required=True),
    "defaults": Field(lambda v, p: v, {}),
    "schedule": Field(lambda v, p: v, {}),
    "timezone": Field(as_timezone, "UTC"),
    "listen": Field(as_listen, DEFAULT_LISTEN),
    "state_dir": Field(as_optional_str),
}


# ---------------------------------------------------------------- building
def substitute_env(node: Any, env: Mapping[str, str], path: str = "", problems: Problems | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` inside string values (never inside keys). A variable that is not
    set is an error, raised, or added to ``problems`` when given (the reference then stays as it is)."""
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            error = ConfigError(path, f"environment variable {name} is not set (use ${{{name}:-default}})")
            if problems is None:
                raise error
            problems.add(error)
            return match.group(0)

        return _ENV_REF.sub(replace, node)
    if isinstance(node, Mapping):
        return {k: substitute_env(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    return node


def build_target(raw: Any, defaults: Mapping[str, Any], path: str) -> TargetConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(raw).__name__}")
    problems = Problems()
    values = check_mapping({**defaults, **raw}, TARGET_FIELDS, path, problems)
    if "name" in values and not TARGET_NAME.match(values["name"]):
        problems.add(ConfigError(f"{path}.name", "must match [a-zA-Z_][a-zA-Z0-9_:.-]*"))
    if values.keys() >= {"min_history", "history"} and values["min_history"] > values["history"]:
        problems.add(ConfigError(f"{path}.min_history", "must not be longer than history"))
    if values.keys() >= {"history", "step"} and values["history"] / values["step"] < 10:
        problems.add(ConfigError(f"{path}.history", "must cover at least 10 steps"))
    problems.raise_any()
    if values["direction"] is None:
        values["direction"] = KIND_DIRECTIONS.get(values["kind"], "both")
    return TargetConfig(**values)


def build_targets(raw: Any, defaults: Any) -> tuple[TargetConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("targets", "expected a non-empty list of targets")
    problems = Problems()
    optional_fields = {k: v for k, v in TARGET_FIELDS.items() if not v.required}
    check_mapping(defaults, optional_fields, "defaults", problems)  # bad defaults under their own path, once
    bad = {re.split(r"[.\[]", error.path.removeprefix("defaults."))[0] for error in problems.errors}
    default_values = {k: v for k, v in defaults.items() if k not in bad} if isinstance(defaults, Mapping) else {}
    targets: list[TargetConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        with problems.collect():
            targets.append(build_target(item, default_values, f"targets[{i}]"))
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str) and name in seen:
            problems.add(ConfigError(f"targets[{i}].name", f"duplicate target name {name!r}"))
        seen.add(name)
    problems.raise_any()
    return tuple(targets)


def read_secret_file(path: str) -> str:
    """The stripped content of a token or password file; OSError or ValueError (empty, not UTF-8) says why not."""
    with open(path, encoding="utf-8") as handle:
        value = handle.read().strip()
    if not value:
        raise ValueError("the file is empty")
    return value


def check_auth(prometheus: PrometheusConfig) -> None:
    """One way to authenticate, as Prometheus' own client config requires: which one wins is never a guess."""
    given = [key for key in ("bearer_token", "bearer_token_file", "basic_auth") if getattr(prometheus, key)]
    if len(given) > 1:
        raise ConfigError(f"prometheus.{given[1]}", f"give only one of bearer_token, bearer_token_file, basic_auth "
                          f"(also set: {given[0]})")  # fmt: skip
    basic = prometheus.basic_auth
    if basic is not None and basic.password and basic.password_file:
        raise ConfigError("prometheus.basic_auth.password_file", "give password or password_file, not both")


def check_credential_files(prometheus: PrometheusConfig) -> None:
    """A token or password file must be readable when the config is loaded (it is re-read when it changes)."""
    files = {"prometheus.bearer_token_file": prometheus.bearer_token_file}
    if prometheus.basic_auth is not None:
        files["prometheus.basic_auth.password_file"] = prometheus.basic_auth.password_file
    problems = Problems()
    for key, path in files.items():
        if not path:
            continue
        try:
            read_secret_file(path)
        except OSError as exc:
            problems.add(ConfigError(key, f"cannot read {path}: {exc.strerror or exc}"))
        except ValueError as exc:  # UnicodeDecodeError included
            problem = "the file is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            problems.add(ConfigError(key, f"cannot use {path}: {problem}"))
    problems.raise_any()


def build_config(raw: Any, env: Mapping[str, str] | None = None) -> Config:
    """The validated config; raises a ConfigError, or ConfigErrors with every problem of every section."""
    problems = Problems()
    raw = substitute_env(raw, os.environ if env is None else env, problems=problems)
    unset = list(problems.errors)  # a key whose variable is not set is reported for that, not for the ${...}
    top = check_mapping(raw, TOP_FIELDS, "", problems)
    built: dict[str, Any] = {}
    sections = {
        "prometheus": checked_prometheus,
        "targets": lambda v: build_targets(v, top.get("defaults")),
        "schedule": lambda v: ScheduleConfig(**check_mapping(v, SCHEDULE_FIELDS, "schedule")),
    }
    for name, build in sections.items():
        if name in top:
            with problems.collect():
                built[name] = build(top[name])
    unset_paths = {error.path for error in unset}
    problems.errors = unset + [e for e in problems.errors[len(unset) :] if e.path not in unset_paths]
    problems.raise_any()
    return Config(**built, timezone=top["timezone"], listen=top["listen"], state_dir=top["state_dir"])


def checked_prometheus(raw: Any) -> PrometheusConfig:
    prometheus = PrometheusConfig(**check_mapping(raw, PROMETHEUS_FIELDS, "prometheus"))
    check_auth(prometheus)
    return prometheus


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config file, and check that its token and password files can be read; raises
    ConfigError (never a bare YAML or KeyError)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    config = build_config(raw, env)
    check_credential_files(config.prometheus)
    return config


def with_prometheus_url(config: Config, url: str) -> Config:
    """The config with ``prometheus.url`` replaced (the ``--prometheus-url`` flag)."""
    prometheus = replace(config.prometheus, url=as_url(url, "--prometheus-url"))
    return replace(config, prometheus=prometheus)
