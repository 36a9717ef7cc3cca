"""Credentials for Prometheus: the Authorization header of each request, and keeping secrets out of text.

``PrometheusAuth`` sets ``Authorization`` per request from ``bearer_token``/``bearer_token_file`` or
``basic_auth``. A file is re-read when it changes (a rotated Kubernetes secret takes effect without a restart); if
it disappears or becomes unreadable or empty, the last good value is kept and one warning is logged until it is
back.

``redact_url`` and ``redact`` remove secrets from anything that may reach a log, an error, a report or a label: the
password of URL userinfo (``http://user:***@host``), Authorization header values, and the literal bearer token and
passwords of the configuration (also their percent-decoded forms).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import requests
from requests.auth import AuthBase

from analyzer.config import PrometheusConfig, read_secret_file

log = logging.getLogger(__name__)
MASK = "***"
# scheme://user:password@ in any text; the password runs to the last "@" before the host (as urlsplit reads it)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s'\"<>]*):(?P<password>[^/\s'\"<>]*)@")
# an echoed Authorization header: "Authorization: Bearer x", "'Authorization': 'Basic x'"
_AUTH_VALUE = re.compile(r"(?i)(?P<head>authorization['\"]?\s*[:=]\s*['\"]?(?:bearer|basic)\s+)[^\s'\",;}]+")
RACY_SECONDS = 2.0  # a file changed this recently may change again within one mtime tick: read it again next time


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***`` (the user name stays, to tell accounts apart)."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", url)


def redact(text: str, config: PrometheusConfig | None = None) -> str:
    """``text`` (an exception message, a log line) with every credential it may carry replaced by ``***``."""
    text = _AUTH_VALUE.sub(lambda m: f"{m.group('head')}{MASK}", redact_url(text))
    for secret in sorted(_secrets(config), key=len, reverse=True) if config else ():
        text = text.replace(secret, MASK)
    return text


class RedactingFormatter(logging.Formatter):
    """Formats with another formatter, then redacts the whole line (message, arguments and traceback)."""

    def __init__(self, inner: logging.Formatter, config: PrometheusConfig | None) -> None:
        super().__init__()
        self.inner = inner
        self.config = config

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record), self.config)


def redact_logs(config: PrometheusConfig | None) -> None:
    """Make every handler of the root logger redact credentials, a last line of defence behind the redacted
    errors: a traceback or a third-party log line that quotes the URL loses its password too."""
    for handler in logging.getLogger().handlers:
        inner = handler.formatter or logging.Formatter()
        if isinstance(inner, RedactingFormatter):
            inner = inner.inner
        handler.setFormatter(RedactingFormatter(inner, config))


def _secrets(config: PrometheusConfig) -> set[str]:
    """The literal secrets of ``config``: URL password, bearer token, basic-auth password, the files' contents."""
    found = {config.bearer_token, _read_quietly(config.bearer_token_file)}
    password = urlsplit(config.url).password
    found |= {password, unquote(password)} if password else set()
    if config.basic_auth is not None:
        found |= {config.basic_auth.password, _read_quietly(config.basic_auth.password_file)}
    return {secret for secret in found if secret}


def _read_quietly(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class _Stamp:
    """What tells a changed file apart: a rotated Kubernetes secret is a new inode behind the same path."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> _Stamp:
        stat = os.stat(path)
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class SecretFile:
    """A secret kept in a file, re-read when the file changes; the last good value survives a missing file."""

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self.key = key  # the config key, for log lines
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._value: str | None = None
        self._racy = False
        self._warned = False

    def value(self) -> str | None:
        """The current secret; None only if the file was never readable."""
        with self._lock:
            try:
                stamp = _Stamp.of(self.path)
                if stamp != self._stamp or self._racy:
                    self._load(stamp)
            except (OSError, ValueError) as exc:
                self._warn(exc)
            return self._value

    def _load(self, stamp: _Stamp) -> None:
        value = read_secret_file(self.path)
        if self._value is not None and value != self._value:
            log.info("%s %s changed: using the new secret", self.key, self.path)
        elif self._warned:
            log.info("%s %s is readable again", self.key, self.path)
        self._value, self._stamp, self._warned = value, stamp, False
        # mtime has the resolution of the kernel's clock tick: a second write within it keeps the same stamp
        self._racy = time.time() - stamp.mtime_ns / 1e9 < RACY_SECONDS

    def _warn(self, exc: OSError | ValueError) -> None:
        if self._warned:
            return
        self._warned = True
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        kept = "keeping the last good value" if self._value is not None else "requests go without it"
        log.warning("%s %s cannot be read (%s): %s until it can", self.key, self.path, problem, kept)


def basic_auth_header(username: str, password: str) -> str:
    """RFC 7617 with UTF-8, as Prometheus' own clients send it."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class PrometheusAuth(AuthBase):
    """Sets ``Authorization`` on each request from the configured bearer token or basic auth, files re-read."""

    def __init__(self, config: PrometheusConfig) -> None:
        self._token_file = SecretFile(config.bearer_token_file, "prometheus.bearer_token_file") if (
            config.bearer_token_file) else None  # fmt: skip
        self._token = config.bearer_token
        basic = config.basic_auth
        self._username = basic.username if basic else None
        self._password = basic.password if basic else None
        self._password_file = SecretFile(basic.password_file, "prometheus.basic_auth.password_file") if (
            basic and basic.password_file) else None  # fmt: skip
        self.header()  # read the files now: their last good value outlives a later disappearance

    @staticmethod
    def configured(config: PrometheusConfig) -> bool:
        return bool(config.bearer_token or config.bearer_token_file or config.basic_auth)

    def header(self) -> str | None:
        """The Authorization header value, or None when there is nothing to send."""
        if self._username is not None:
            password = self._password_file.value() if self._password_file else self._password
            return basic_auth_header(self._username, password or "")
        token = self._token_file.value() if self._token_file else self._token
        return f"Bearer {token}" if token else None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        value = self.header()
        if value is not None:
            request.headers["Authorization"] = value
        return request
