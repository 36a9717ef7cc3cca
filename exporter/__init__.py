"""Perf Sentinel exporter: analysis results and self-monitoring as Prometheus metrics."""
