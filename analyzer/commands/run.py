"""``perfsentinel run``: the long-running service (scheduled refits and scores) behind the /metrics endpoint."""

from __future__ import annotations

import logging

from analyzer.config import Config
from analyzer.models.fitting import FitPool
from analyzer.prometheus.reader import PrometheusReader
from analyzer.service.pipeline import Analyzer
from analyzer.service.scheduler import Service
from analyzer.service.sharding import Shard
from exporter.selfmetrics import SelfMetrics
from exporter.server import Exposition, MetricsServer

log = logging.getLogger(__name__)


def serve(config: Config, listen: str, shard: Shard) -> int:
    """Serve /metrics on ``listen`` (HOST:PORT) and run the scheduled passes until SIGTERM or SIGINT."""
    telemetry = SelfMetrics()
    exposition = Exposition(telemetry)
    host, _, port = listen.rpartition(":")
    server = MetricsServer(exposition, host.strip("[]") or "0.0.0.0", int(port))
    analyzer = Analyzer(config, PrometheusReader(config.prometheus, telemetry), telemetry,
                        FitPool(config.schedule.fit_workers), shard)  # fmt: skip
    server.start()
    log.info("serving /metrics on %s:%d (shard %d of %d)", host, server.port, shard.index, shard.count)
    try:
        Service(analyzer, telemetry, exposition.publish).run_until_signalled()
    finally:
        server.stop()
    return 0
