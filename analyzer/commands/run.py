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
from exporter.webconfig import WebConfigFile

log = logging.getLogger(__name__)


def serve(config: Config, listen: str, shard: Shard, web_config_file: str | None = None) -> int:
    """Serve /metrics on ``listen`` (HOST:PORT) and run the scheduled passes until SIGTERM or SIGINT.
    ``web_config_file`` (exporter-toolkit format) adds TLS and basic auth; a bad one is a ConfigError."""
    web_config = WebConfigFile(web_config_file) if web_config_file else None
    telemetry = SelfMetrics()
    exposition = Exposition(telemetry)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    server = MetricsServer(exposition, host, int(port), web_config)
    analyzer = Analyzer(config, PrometheusReader(config.prometheus, telemetry), telemetry,
                        FitPool(config.schedule.fit_workers), shard)  # fmt: skip
    server.start()
    address = f"[{host}]" if ":" in host else host
    security = web_config.summary if web_config else "plain HTTP, no authentication"
    log.info("serving /metrics on %s://%s:%d (%s; shard %d of %d)", server.scheme, address, server.port, security,
             shard.index, shard.count)  # fmt: skip
    try:
        Service(analyzer, telemetry, exposition.publish).run_until_signalled()
    finally:
        server.stop()
    return 0
