"""Perf Sentinel analyzer: reads Prometheus, fits seasonal baselines, scores series."""

__version__ = "0.1.0"
