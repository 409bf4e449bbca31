"""The Prometheus metrics: served by prometheus_client from a private registry on 127.0.0.1, every
metric name, label and type that dashboards read, scraped over HTTP and read by prometheus_client's
own parser."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest
from daemon_support import metric_samples
from prometheus_client.parser import text_string_to_metric_families

from afmwatch.daemon.metrics import BUCKETS, ByLabel, Metrics, serve_metrics


def _scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def _busy(metrics: Metrics) -> None:
    metrics.count("good")
    metrics.count("good")
    metrics.count("bad")
    metrics.observe("read", 0.003)
    metrics.observe("read", 0.2)
    metrics.observe("inference", 40.0)  # beyond the last bucket: only +Inf counts it
    metrics.batch(16)
    metrics.batch(3)
    metrics.alert_started("stall")
    metrics.set_alerts({"bad_in_a_row": False, "file_failed": False, "stall": True})


def _gauges() -> dict[str, float | ByLabel]:
    return {
        "pending_files": 4,
        "read_queue_depth": 2,
        "infer_queue_depth": 1,
        "act_queue_depth": 0,
        "sort_waiting": ByLabel("cause", 5, {"output folder full": 3, "output folder read-only": 2}),
        "journal_unavailable": 1.0,
    }


@pytest.fixture
def served():
    metrics = Metrics()
    _busy(metrics)
    server = serve_metrics(0, metrics, _gauges)  # port 0: the system picks a free one
    try:
        yield metrics, server
    finally:
        server.shutdown()
        server.server_close()


def test_a_running_server_is_scraped_and_parsed_by_prometheus_client(served):
    metrics, server = served
    assert server.server_address[0] == "127.0.0.1"
    threads = [t for t in threading.enumerate() if t.name == "afmwatch-metrics"]
    assert threads and all(t.daemon for t in threads), "the server never keeps the daemon process alive"

    families = {f.name: f for f in text_string_to_metric_families(_scrape(server.server_port))}
    types = {name: family.type for name, family in families.items() if not name.endswith("_created")}
    assert types == {
        "afmwatch_processed": "counter",
        "afmwatch_stage_seconds": "histogram",
        "afmwatch_batches": "counter",
        "afmwatch_batched_frames": "counter",
        "afmwatch_alert_active": "gauge",
        "afmwatch_alerts": "counter",
        "afmwatch_pending_files": "gauge",
        "afmwatch_read_queue_depth": "gauge",
        "afmwatch_infer_queue_depth": "gauge",
        "afmwatch_act_queue_depth": "gauge",
        "afmwatch_sort_waiting": "gauge",
        "afmwatch_journal_unavailable": "gauge",
    }
    assert all(family.documentation for family in families.values()), "every metric says what it means"

    samples = metric_samples(_scrape(server.server_port))
    assert samples['afmwatch_processed_total{decision="good"}'] == 2
    assert samples['afmwatch_processed_total{decision="bad"}'] == 1
    assert len([key for key in samples if key.startswith("afmwatch_processed_total")]) == 2, "only decisions seen"
    assert samples["afmwatch_batches_total"] == 2 and samples["afmwatch_batched_frames_total"] == 19
    assert samples['afmwatch_alert_active{alert="stall"}'] == 1
    assert samples['afmwatch_alert_active{alert="bad_in_a_row"}'] == 0
    assert samples['afmwatch_alerts_total{alert="stall"}'] == 1
    assert samples['afmwatch_alerts_total{alert="file_failed"}'] == 0
    assert samples["afmwatch_pending_files"] == 4 and samples["afmwatch_read_queue_depth"] == 2
    assert samples["afmwatch_infer_queue_depth"] == 1 and samples["afmwatch_act_queue_depth"] == 0
    assert samples["afmwatch_sort_waiting"] == 5
    assert samples['afmwatch_sort_waiting{cause="output folder full"}'] == 3
    assert samples['afmwatch_sort_waiting{cause="output folder read-only"}'] == 2
    assert samples["afmwatch_journal_unavailable"] == 1


def test_stage_histograms_keep_their_buckets_per_stage(served):
    _, server = served
    samples = metric_samples(_scrape(server.server_port))
    read = {
        key.split('le="')[1].split('"')[0]: value
        for key, value in samples.items()
        if key.startswith("afmwatch_stage_seconds_bucket") and 'stage="read"' in key
    }
    assert list(read) == [str(b) for b in BUCKETS] + ["+Inf"], "the same bucket bounds as always"
    assert read["0.005"] == 1 and read["0.1"] == 1 and read["0.25"] == 2  # cumulative, as Prometheus reads them
    assert read["+Inf"] == 2
    assert samples['afmwatch_stage_seconds_count{stage="read"}'] == 2
    assert samples['afmwatch_stage_seconds_sum{stage="read"}'] == pytest.approx(0.203)
    assert samples['afmwatch_stage_seconds_bucket{le="30.0",stage="inference"}'] == 0
    assert samples['afmwatch_stage_seconds_bucket{le="+Inf",stage="inference"}'] == 1


def test_only_metrics_is_served_and_the_gauges_are_computed_at_each_scrape():
    metrics = Metrics()
    depth = {"read_queue_depth": 0.0}
    server = serve_metrics(0, metrics, lambda: dict(depth))
    try:
        assert metric_samples(_scrape(server.server_port))["afmwatch_read_queue_depth"] == 0
        depth["read_queue_depth"] = 7.0
        assert metric_samples(_scrape(server.server_port))["afmwatch_read_queue_depth"] == 7
        with pytest.raises(urllib.error.HTTPError) as missing:
            _scrape(server.server_port, "/")
        assert missing.value.code == 404
        # before anything happened: the plain counters at 0, no labelled series yet
        samples = metric_samples(_scrape(server.server_port))
        assert samples["afmwatch_batches_total"] == 0 and samples["afmwatch_batched_frames_total"] == 0
        assert not [key for key in samples if key.startswith(("afmwatch_processed_total", "afmwatch_stage_seconds"))]
    finally:
        server.shutdown()
        server.server_close()


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()  # as two services in one process: no clash over names
    first.count("good")
    assert metric_samples(first.exposition())['afmwatch_processed_total{decision="good"}'] == 1
    assert 'afmwatch_processed_total{decision="good"}' not in metric_samples(second.exposition())


def test_a_busy_port_raises_oserror_for_the_start_up_check():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            serve_metrics(taken.getsockname()[1], Metrics(), dict)
