"""In-process counters and latency histograms, optionally served as Prometheus text on 127.0.0.1.

The Prometheus text exposition format is a few lines of plain text, so no client library is needed:
`metrics_port: 9464` in the config serves http://127.0.0.1:9464/metrics.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed: dict[str, int] = defaultdict(int)  # decision -> count
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)
        self.batches = 0
        self.batched_frames = 0
        self.alerts_started: dict[str, int] = defaultdict(int)  # alert kind -> times it started
        self.alerts_active: dict[str, bool] = {}  # alert kind -> active now

    def count(self, decision: str) -> None:
        with self._lock:
            self.processed[decision] += 1

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            counts = self._hist.setdefault(stage, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self._sum[stage] += seconds
            self._count[stage] += 1

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batched_frames += size

    def alert_started(self, kind: str) -> None:
        with self._lock:
            self.alerts_started[kind] += 1

    def set_alerts(self, active: dict[str, bool]) -> None:
        """Every alert kind with whether it is active now (all of them, so the gauge shows 0 too)."""
        with self._lock:
            self.alerts_active = dict(active)

    def exposition(self, gauges: dict[str, float]) -> str:
        """The Prometheus text format (version 0.0.4)."""
        lines = [
            "# HELP afmwatch_processed_total Scans finished, by decision.",
            "# TYPE afmwatch_processed_total counter",
        ]
        with self._lock:
            for decision, n in sorted(self.processed.items()):
                lines.append(f'afmwatch_processed_total{{decision="{decision}"}} {n}')
            lines += [
                "# HELP afmwatch_stage_seconds Time spent per stage and scan.",
                "# TYPE afmwatch_stage_seconds histogram",
            ]
            for stage, counts in sorted(self._hist.items()):
                for bound, n in zip(BUCKETS, counts):
                    lines.append(f'afmwatch_stage_seconds_bucket{{stage="{stage}",le="{bound}"}} {n}')
                lines.append(f'afmwatch_stage_seconds_bucket{{stage="{stage}",le="+Inf"}} {self._count[stage]}')
                lines.append(f'afmwatch_stage_seconds_sum{{stage="{stage}"}} {self._sum[stage]:.6f}')
                lines.append(f'afmwatch_stage_seconds_count{{stage="{stage}"}} {self._count[stage]}')
            lines += ["# TYPE afmwatch_batches_total counter", f"afmwatch_batches_total {self.batches}"]
            lines += [
                "# TYPE afmwatch_batched_frames_total counter",
                f"afmwatch_batched_frames_total {self.batched_frames}",
            ]
            lines += [
                "# HELP afmwatch_alert_active Whether an alert is active now (1) or not (0), by alert.",
                "# TYPE afmwatch_alert_active gauge",
            ]
            for kind, active in sorted(self.alerts_active.items()):
                lines.append(f'afmwatch_alert_active{{alert="{kind}"}} {int(active)}')
            lines += [
                "# HELP afmwatch_alerts_total Alerts started, by alert.",
                "# TYPE afmwatch_alerts_total counter",
            ]
            for kind in sorted(set(self.alerts_started) | set(self.alerts_active)):
                lines.append(f'afmwatch_alerts_total{{alert="{kind}"}} {self.alerts_started.get(kind, 0)}')
        typed: set[str] = set()
        for name, value in sorted(gauges.items()):  # a name may carry labels: 'sort_waiting{cause="..."}'
            base = name.partition("{")[0]
            if base not in typed:
                typed.add(base)
                lines.append(f"# TYPE afmwatch_{base} gauge")
            lines.append(f"afmwatch_{name} {value}")
        return "\n".join(lines) + "\n"


def serve_metrics(port: int, metrics: Metrics, gauges: Callable[[], dict[str, float]]) -> ThreadingHTTPServer:
    """Serve /metrics on 127.0.0.1:`port` from a daemon thread; returns the server (shutdown() it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.exposition(gauges()).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: scrapes are not events
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="afmwatch-metrics", daemon=True).start()
    return server
