"""Processes through /proc (psutil is not a dependency): children, descendants, liveness, CPU time."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and int(stat[1]) == pid:
            found.append(int(entry))
    return found


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...]; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited


def cpu_ticks(pid: int) -> int:
    stat = _stat(pid)
    return int(stat[11]) + int(stat[12]) if stat else 0  # utime + stime


def fit_workers(service: int) -> tuple[list[int], list[int]]:
    """(fork servers, fit workers) of the service: with forkserver the workers are the fork server's children."""
    servers = [pid for pid in children(service) if b"forkserver" in _cmdline(pid)]
    return servers, [worker for server in servers for worker in children(server)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def descendants(pid: int) -> list[int]:
    direct = children(pid)
    return direct + [grand for child in direct for grand in descendants(child)]


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@contextmanager
def killed_if_left(service: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """A service started for a test is killed if the block fails before it stopped (no orphan after a failure)."""
    try:
        yield service
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def stop_cleanly(service: subprocess.Popen) -> None:
    """SIGTERM, as Kubernetes and systemd stop it: the service must exit 0."""
    service.send_signal(signal.SIGTERM)
    assert service.wait(timeout=30) == 0
