"""Splits series between analyzer replicas: a stable hash of (target, series labels) modulo the shard count.

The hash depends only on the series identity, so every replica agrees without talking to the others, the
shards cover each series exactly once, and restarting a replica moves nothing.
"""

from __future__ import annotations

import hashlib
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
