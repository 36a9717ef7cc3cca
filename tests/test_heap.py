"""analyzer/service/heap.py: long-lived objects frozen after a refit pass, their cyclic garbage reclaimed at the
next pass."""

from __future__ import annotations

import gc
import weakref

from analyzer.service import heap


class Node:
    """An object in a reference cycle (only the cyclic collector frees it)."""

    def __init__(self) -> None:
        self.itself = self


def test_settle_freezes_what_is_alive_and_reclaims_frozen_cycles_at_the_next_settle() -> None:
    alive = Node()
    watched = weakref.ref(alive)
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        del alive  # now cyclic garbage, but frozen
        gc.collect()
        assert watched() is not None, "a full collection skips frozen objects"
        heap.settle()
        assert watched() is None, "the next settle unfreezes and collects first"
    finally:
        gc.unfreeze()


def test_settle_collects_cyclic_garbage_before_freezing() -> None:
    gc.disable()  # no automatic collection in between: only settle's own
    garbage = Node()
    watched = weakref.ref(garbage)
    del garbage
    try:
        heap.settle()
        assert watched() is None
    finally:
        gc.unfreeze()
        gc.enable()
