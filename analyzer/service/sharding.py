"""Splits series between analyzer replicas: a stable hash of (target, series labels) modulo the shard count.

The hash depends only on the series identity, so every replica agrees without talking to the others, the
shards cover each series exactly once, and restarting a replica moves nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass


def shard_of(target: str, series_key: str, count: int) -> int:
    digest = hashlib.blake2b(f"{target}\x00{series_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in [0, {self.count}), got {self.index} of {self.count}")

    def owns(self, target: str, series_key: str) -> bool:
        return self.count == 1 or shard_of(target, series_key, self.count) == self.index


SHARD_INDEX_ENV = "PERFSENTINEL_SHARD_INDEX"
SHARD_COUNT_ENV = "PERFSENTINEL_SHARD_COUNT"


def ordinal_from_hostname(hostname: str) -> int:
    """The ordinal of a StatefulSet pod, whose hostname is ``<statefulset name>-<ordinal>``.

    The ordinal is stable across restarts and rescheduling, so a pod keeps its share of the series.
    """
    match = re.fullmatch(r".+-(\d+)", hostname.split(".", 1)[0])
    if match is None:
        raise ValueError(f"hostname {hostname!r} does not end in -<ordinal> (a StatefulSet pod name does)")
    return int(match.group(1))


def resolve_shard(
    index: int | None,
    count: int | None,
    from_hostname: bool,
    env: Mapping[str, str],
    hostname: str,
) -> Shard:
    """This replica's shard: explicit values first, then the environment, then the hostname if asked.

    Raises ValueError when the sources conflict or the result is out of range.
    """
    if index is None and env.get(SHARD_INDEX_ENV, "").strip():
        index = _env_int(env, SHARD_INDEX_ENV)
    if count is None and env.get(SHARD_COUNT_ENV, "").strip():
        count = _env_int(env, SHARD_COUNT_ENV)
    if from_hostname:
        if index is not None:
            raise ValueError("give either a shard index or --shard-index-from-hostname, not both")
        index = ordinal_from_hostname(hostname)
    return Shard(index or 0, count or 1)


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {env[name]!r}") from None
