"""In-process counters and latency histograms, optionally served to Prometheus on 127.0.0.1.

`prometheus_client` keeps the values and writes the exposition: `metrics_port: 9464` in the config serves
http://127.0.0.1:9464/metrics. Each `Metrics` has its own registry (never the library's global one), so
several services in one process (the tests) do not share or clash over counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PREFIX = "afmwatch_"

# What the gauges computed at scrape time mean (the service reports their values; see `ScrapeGauges`)
GAUGE_HELP = {
    "pending_files": "Files seen in the watch folder and not yet settled.",
    "read_queue_depth": "Settled files waiting to be read.",
    "infer_queue_depth": "Read scans waiting for the classifier.",
    "act_queue_depth": "Classified scans waiting to be sorted.",
    "sort_waiting": "Scans waiting to be sorted again (the output folder full or read-only), in all and by cause.",
    "journal_unavailable": "Whether the journal cannot be written now (1: intake paused) or can (0).",
}


@dataclass(frozen=True)
class ByLabel:
    """A gauge with a total and one value per value of `label`: `afmwatch_sort_waiting 6` beside
    `afmwatch_sort_waiting{cause="output folder full"} 6`."""

    label: str
    total: float
    values: dict[str, float]


ScrapeGauges = Callable[[], dict[str, float | ByLabel]]  # gauge name (without the prefix) -> value now


class _ScrapeGaugeCollector(Collector):
    """The gauges whose values the service computes when Prometheus scrapes (queue depths, scans
    waiting, journal state); none until a source is given."""

    def __init__(self) -> None:
        self.source: ScrapeGauges | None = None

    def collect(self) -> Iterator[Metric]:
        if self.source is None:
            return
        for name, value in sorted(self.source().items()):
            family = GaugeMetricFamily(PREFIX + name, GAUGE_HELP.get(name, name.replace("_", " ")))
            if isinstance(value, ByLabel):
                family.add_sample(PREFIX + name, {}, float(value.total))
                for label_value, n in sorted(value.values.items()):
                    family.add_sample(PREFIX + name, {value.label: label_value}, float(n))
            else:
                family.add_metric([], float(value))
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._processed = Counter(
            "afmwatch_processed_total", "Scans finished, by decision.", ["decision"], registry=self.registry
        )
        self._stage_seconds = Histogram(
            "afmwatch_stage_seconds",
            "Time spent per stage and scan.",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._batches = Counter("afmwatch_batches_total", "Batches the classifier ran.", registry=self.registry)
        self._batched_frames = Counter(
            "afmwatch_batched_frames_total", "Frames classified in those batches.", registry=self.registry
        )
        self._alert_active = Gauge(
            "afmwatch_alert_active",
            "Whether an alert is active now (1) or not (0), by alert.",
            ["alert"],
            registry=self.registry,
        )
        self._alerts_total = Counter(
            "afmwatch_alerts_total", "Alerts started, by alert.", ["alert"], registry=self.registry
        )
        self._alert_kinds: set[str] = set()
        self._alerts_lock = threading.Lock()  # set_alerts removes and sets several series as one change
        self._gauges = _ScrapeGaugeCollector()
        self.registry.register(self._gauges)

    def count(self, decision: str) -> None:
        self._processed.labels(decision=decision).inc()

    def observe(self, stage: str, seconds: float) -> None:
        self._stage_seconds.labels(stage=stage).observe(seconds)

    def batch(self, size: int) -> None:
        self._batches.inc()
        self._batched_frames.inc(size)

    def alert_started(self, kind: str) -> None:
        self._alerts_total.labels(alert=kind).inc()

    def set_alerts(self, active: dict[str, bool]) -> None:
        """Every alert kind with whether it is active now (all of them, so the gauge shows 0 too, and
        `afmwatch_alerts_total` shows 0 for an alert that never started)."""
        with self._alerts_lock:
            for kind in self._alert_kinds - set(active):
                self._alert_active.remove(kind)
            for kind, is_active in active.items():
                self._alert_active.labels(alert=kind).set(int(is_active))
                self._alerts_total.labels(alert=kind)  # the series exists at 0 before the alert first starts
            self._alert_kinds = set(active)

    def gauges_from(self, source: ScrapeGauges) -> None:
        """Report `source()`'s gauges at every scrape (replacing any source given before)."""
        self._gauges.source = source

    def exposition(self) -> str:
        """What a scrape returns now (the Prometheus text format, version 0.0.4)."""
        return generate_latest(self.registry).decode("utf-8")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet: scrapes are not events
        pass


def serve_metrics(port: int, metrics: Metrics, gauges: ScrapeGauges) -> WSGIServer:
    """Serve `metrics` (and `gauges()`, computed at each scrape) at /metrics on 127.0.0.1:`port` from a
    daemon thread, one daemon thread per request; returns the server (shutdown() it). Raises OSError
    when the port cannot be bound.

    prometheus_client's WSGI app writes the exposition (and answers OpenMetrics and gzip when the
    scraper asks); its server class runs it. Not `start_http_server`: that one answers every path,
    names no thread, and returns the server only from prometheus_client 0.20 on."""
    metrics.gauges_from(gauges)
    app = make_wsgi_app(metrics.registry)

    def only_metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found: metrics are at /metrics\n"]
        result: Iterable[bytes] = app(environ, start_response)
        return result

    server = make_server("127.0.0.1", port, only_metrics, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="afmwatch-metrics", daemon=True).start()
    return server
