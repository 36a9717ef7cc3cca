"""``--web.config.file``: TLS and basic auth for the HTTP endpoints, in the Prometheus exporter-toolkit format
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md).

Supported: ``tls_server_config`` (``cert_file``, ``key_file``, ``client_auth_type``, ``client_ca_file``,
``min_version``, ``max_version``, ``prefer_server_cipher_suites``), ``http_server_config`` (``headers``, and
``http2``, accepted and ignored: the server speaks HTTP/1.1) and ``basic_auth_users`` (username -> bcrypt hash).
The other keys of the format are refused by name, as are unknown keys and bad values (``ConfigError``). Relative
file names are relative to the config file's folder, as in the exporter-toolkit.

``WebConfigFile`` re-reads the file, and the certificate, key and CA files it names, when one of them changes
(checked once per connection and per request; the exporter-toolkit reads it per request). An invalid new version
is logged and fails closed (TLS connections are refused, requests answered 500) until it is fixed.

``BasicAuth`` checks passwords with bcrypt, deliberately slow (about 60 ms at cost 10 on these machines), so it
caches the outcome by a digest of user, hash and password like the exporter-toolkit (a scrape every 15 s pays
bcrypt once), runs at most one check at a time, and checks an unknown user against a decoy hash so that timing
does not reveal which users exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analyzer.config import ConfigError

log = logging.getLogger(__name__)

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}  # fmt: skip
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}  # fmt: skip
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# the exporter-toolkit's configurable response headers and, where it restricts them, their values
HEADERS: dict[str, tuple[str, ...]] = {"Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
                                       "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (),
                                       "Content-Security-Policy": ()}  # fmt: skip
NOT_SUPPORTED = {
    "tls_server_config.cert": "inline certificates are not supported; use cert_file",
    "tls_server_config.key": "inline keys are not supported; use key_file",
    "tls_server_config.client_ca": "an inline client CA is not supported; use client_ca_file",
    "tls_server_config.client_allowed_sans": "not supported",
    "tls_server_config.cipher_suites": "not supported (OpenSSL's defaults are used)",
    "tls_server_config.curve_preferences": "not supported (OpenSSL's defaults are used)",
    "rate_limit": "not supported",
}
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
DECOY_HASH = b"$2b$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"  # a bcrypt hash of no user's password
CACHE_SIZE = 100


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True

    def files(self) -> list[str]:
        return [self.cert_file, self.key_file, *([self.client_ca_file] if self.client_ca_file else [])]


@dataclass(frozen=True)
class WebConfig:
    tls: TLSSettings | None = None
    users: Mapping[str, str] = field(default_factory=dict)  # username -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    @property
    def summary(self) -> str:
        parts = ["TLS" if self.tls else "plain HTTP"]
        if self.tls and self.tls.client_auth_type != "NoClientCert":
            parts.append(f"client certificates ({self.tls.client_auth_type})")
        if self.users:
            parts.append(f"basic auth ({len(self.users)} user{'s' if len(self.users) != 1 else ''})")
        return ", ".join(parts)


# ---------------------------------------------------------------- parsing
def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
    return value


def _only_keys(section: Mapping[str, Any], known: tuple[str, ...], prefix: str, path: str) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if name in NOT_SUPPORTED:
            raise ConfigError(f"{path}: {name}", NOT_SUPPORTED[name])
        if key not in known:
            raise ConfigError(f"{path}: {name}", f"unknown key (expected one of {', '.join(known)})")


def _string(section: Mapping[str, Any], key: str, prefix: str, path: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {prefix}{key}", f"expected a string, got {value!r}")
    return value


def _choice(value: str | None, allowed: Mapping[str, Any], default: str, where: str) -> str:
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(where, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _file(value: str | None, base: Path) -> str | None:
    return None if value is None else str(base / value)


def parse_tls(raw: Any, base: Path, path: str) -> TLSSettings | None:
    prefix = "tls_server_config."
    section = _mapping(raw, f"{path}: tls_server_config")
    _only_keys(section, ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
                         "prefer_server_cipher_suites"), prefix, path)  # fmt: skip
    cert, key = _string(section, "cert_file", prefix, path), _string(section, "key_file", prefix, path)
    auth, ca = _string(section, "client_auth_type", prefix, path), _string(section, "client_ca_file", prefix, path)
    if not (cert or key or auth or ca):
        return None  # as the exporter-toolkit: no certificate, key or client auth means no TLS
    for name, value in (("cert_file", cert), ("key_file", key)):
        if value is None:
            raise ConfigError(f"{path}: {prefix}{name}", "missing: TLS needs a certificate and its key")
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise ConfigError(f"{path}: {prefix}client_auth_type", f"{auth} accepts client certificates without "
                          "verifying them and is not supported; use RequireAndVerifyClientCert")  # fmt: skip
    auth = _choice(auth, CLIENT_AUTH, "NoClientCert", f"{path}: {prefix}client_auth_type")
    if ca and auth == "NoClientCert":
        raise ConfigError(f"{path}: {prefix}client_ca_file", "set, but client_auth_type is NoClientCert; use "
                          "RequireAndVerifyClientCert to require client certificates")  # fmt: skip
    if not ca and auth != "NoClientCert":
        raise ConfigError(f"{path}: {prefix}client_ca_file", f"missing: {auth} verifies client certificates "
                          "against it")  # fmt: skip
    low = _choice(_string(section, "min_version", prefix, path), TLS_VERSIONS, "TLS12", f"{path}: {prefix}min_version")
    high = _choice(_string(section, "max_version", prefix, path), TLS_VERSIONS, "TLS13", f"{path}: {prefix}max_version")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise ConfigError(f"{path}: {prefix}min_version", f"{low} is above max_version {high}")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ConfigError(f"{path}: {prefix}prefer_server_cipher_suites", f"expected true or false, got {prefer!r}")
    return TLSSettings(_file(cert, base), _file(key, base), auth, _file(ca, base), low, high, prefer)


def parse_headers(raw: Any, path: str) -> dict[str, str]:
    prefix = "http_server_config."
    section = _mapping(raw, f"{path}: http_server_config")
    _only_keys(section, ("headers", "http2"), prefix, path)
    if not isinstance(section.get("http2", True), bool):
        raise ConfigError(f"{path}: {prefix}http2", f"expected true or false, got {section['http2']!r}")
    headers = {}
    for name, value in _mapping(section.get("headers"), f"{path}: {prefix}headers").items():
        where = f"{path}: {prefix}headers.{name}"
        if name not in HEADERS:
            raise ConfigError(where, f"this header cannot be configured (one of {', '.join(HEADERS)})")
        if value is None or value == "":
            continue  # the exporter-toolkit: unset if blank
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ConfigError(where, f"expected a one-line string, got {value!r}")
        if HEADERS[name] and value not in HEADERS[name]:
            raise ConfigError(where, f"must be one of {', '.join(HEADERS[name])}; got {value!r}")
        headers[name] = value
    return headers


def parse_users(raw: Any, path: str) -> dict[str, str]:
    users = {}
    for name, hashed in _mapping(raw, f"{path}: basic_auth_users").items():
        where = f"{path}: basic_auth_users.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(where, "a username is a non-empty string without ':'")
        match = BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise ConfigError(where, "expected a bcrypt hash ($2y$10$ and 53 characters, e.g. from "
                              "htpasswd -nBC 10 \"\" | tr -d ':\\n'), not a password")  # fmt: skip
        users[name] = hashed
    return users


def tls_context(tls: TLSSettings, path: str) -> ssl.SSLContext:
    """The server context; a file that cannot be read or used is a ConfigError naming its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version, context.maximum_version = TLS_VERSIONS[tls.min_version], TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{path}: tls_server_config.cert_file", f"cannot load {tls.cert_file} with key "
                          f"{tls.key_file}: {exc.strerror or exc}") from None  # fmt: skip
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{path}: tls_server_config.client_ca_file", f"cannot load {tls.client_ca_file}: "
                              f"{exc.strerror or exc}") from None  # fmt: skip
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return context


def parse_web_config(raw: Any, base: Path, path: str) -> WebConfig:
    top = _mapping(raw, path)
    _only_keys(top, ("tls_server_config", "http_server_config", "basic_auth_users"), "", path)
    tls = parse_tls(top.get("tls_server_config"), base, path)
    return WebConfig(tls, parse_users(top.get("basic_auth_users"), path),
                     parse_headers(top.get("http_server_config"), path), tls and tls_context(tls, path))  # fmt: skip


def load_web_config(path: str) -> WebConfig:
    """Read, validate and build (TLS context included) a web config file; raises ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--web.config.file", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("--web.config.file", f"{path} is not valid YAML: {exc}") from None
    return parse_web_config(raw, Path(path).resolve().parent, path)


# ---------------------------------------------------------------- reloading
def _stamp(paths: list[str]) -> tuple:
    """What changes when a file is rewritten or a Kubernetes Secret's symlinks are swapped."""
    stamps = []
    for path in paths:
        try:
            info = os.stat(path)
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


class WebConfigInvalid(Exception):
    """The web config file changed and its new version is not valid: serve nothing that needs it."""


class WebConfigFile:
    """The current web config of ``path``. TLS cannot be switched on or off while running (the listener decides
    at start whether connections are TLS): a new version that does is refused like an invalid one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._config = load_web_config(path)
        self._stamp = self._stamp_now(self._config)
        self._error: str | None = None

    def _stamp_now(self, config: WebConfig) -> tuple:
        return _stamp([self.path, *(config.tls.files() if config.tls else [])])

    @property
    def tls(self) -> bool:
        return self._config.tls is not None

    @property
    def summary(self) -> str:
        return self._config.summary

    def current(self) -> WebConfig:
        """The config, re-read first if a file changed; raises WebConfigInvalid while the new version is bad."""
        with self._lock:
            stamp = self._stamp_now(self._config)
            if stamp != self._stamp:
                self._reload(stamp)
            if self._error is not None:
                raise WebConfigInvalid(self._error)
            return self._config

    def _reload(self, stamp: tuple) -> None:
        self._stamp = stamp
        try:
            config = load_web_config(self.path)
            if (config.tls is None) != (self._config.tls is None):
                raise ConfigError(f"{self.path}: tls_server_config", "TLS cannot be switched on or off while "
                                  "running: restart perfsentinel")  # fmt: skip
        except ConfigError as exc:
            if self._error != str(exc):
                log.error("web config not reloaded, refusing requests until it is fixed: %s", exc)
            self._error = str(exc)
            return
        self._config, self._error = config, None
        self._stamp = self._stamp_now(config)
        log.info("web config %s reloaded: %s", self.path, config.summary)


# ---------------------------------------------------------------- basic auth
def credentials(authorization: str | None) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class BasicAuth:
    """Checks basic-auth credentials against the users' bcrypt hashes, caching outcomes (see the module doc)."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        import bcrypt  # noqa: PLC0415 (only a service with basic_auth_users needs it)

        self._bcrypt = bcrypt
        self._cache: dict[bytes, bool] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()  # one bcrypt at a time: it is CPU-bound and slow on purpose
        self.bcrypt_checks = 0

    def cached(self, users: Mapping[str, str], user: str, password: str) -> bool | None:
        return self._cache.get(self._key(users, user, password))

    def check(self, users: Mapping[str, str], user: str, password: str) -> bool:
        """True when ``password`` is ``user``'s; slow (bcrypt) unless this user, hash and password were checked."""
        key = self._key(users, user, password)
        known = self._cache.get(key)
        if known is not None:
            return known
        hashed = users.get(user, "").encode() or DECOY_HASH
        with self._lock:
            self.bcrypt_checks += 1
            try:
                matches = self._bcrypt.checkpw(password.encode("utf-8"), hashed)
            except ValueError:  # e.g. a password longer than bcrypt's 72 bytes
                matches = False
        allowed = matches and user in users
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = allowed
        return allowed

    @staticmethod
    def _key(users: Mapping[str, str], user: str, password: str) -> bytes:
        """A digest, so the cache holds no password; the hash is part of it, so a changed hash is checked anew."""
        parts = (user, users.get(user, ""), password)
        return hashlib.sha256(b"\0".join(part.encode("utf-8", "surrogatepass") for part in parts)).digest()
