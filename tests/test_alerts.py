"""Alerts: N bad scans in a row, a failed file, a stall; computed from the journal, announced once by
the daemon (log, Prometheus, e-mail through a local SMTP server, a local webhook receiver)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from alert_support import LocalSMTP, LocalWebhook, serving
from daemon_support import (
    Daemon,
    metric_samples,
    processed_count,
    scan_bytes_file,
    tiny_model,
    wait_until,
    write_config,
)

from afmwatch.config import AlertsConfig, ConfigError, EmailConfig, WebhookConfig, config_from_dict
from afmwatch.daemon.alert_monitor import AlertMonitor
from afmwatch.daemon.alert_notify import notify
from afmwatch.daemon.alerts import AlertKind, active_alerts
from afmwatch.daemon.journal import Journal, State
from afmwatch.daemon.metrics import Metrics


def _sorted(journal: Journal, name: str, decision: str) -> int:
    entry = journal.add(f"/inbox/{name}", 10, 1)
    state = State.FAILED if decision == "failed" else State.DONE
    error = "not a Nanosurf .nid file" if decision == "failed" else None
    journal.update(entry, state=state, decision=decision, final_path=f"/out/{decision}/{name}", error=error)
    return entry


def _alerts(journal: Journal, settings: AlertsConfig = AlertsConfig(), now: float | None = None) -> dict:
    db = sqlite3.connect(journal.path)
    try:
        return {alert.kind: alert for alert in active_alerts(db, settings, now)}
    finally:
        db.close()


@pytest.fixture
def journal(tmp_path) -> Journal:
    journal = Journal(tmp_path / "state")
    yield journal
    journal.close()


# --- the conditions, from the journal --------------------------------------------------------------


def test_five_bad_scans_in_a_row_raise_the_alert_and_a_good_one_ends_it(journal):
    _sorted(journal, "ok.tif", "good")
    for i in range(4):
        _sorted(journal, f"b{i}.tif", "bad")
    _sorted(journal, "f.nid", "failed")  # a failed file neither breaks nor extends the run
    assert AlertKind.BAD_IN_A_ROW not in _alerts(journal)
    _sorted(journal, "b4.tif", "bad")
    alert = _alerts(journal)[AlertKind.BAD_IN_A_ROW]
    assert alert.details["count"] == 5 and "5 scans in a row decided bad" in alert.message and "b4.tif" in alert.message
    assert AlertKind.BAD_IN_A_ROW not in _alerts(journal, AlertsConfig(bad_in_a_row=6))
    assert AlertKind.BAD_IN_A_ROW not in _alerts(journal, AlertsConfig(bad_in_a_row=0))  # switched off
    _sorted(journal, "review.tif", "review")
    assert AlertKind.BAD_IN_A_ROW not in _alerts(journal)


def test_a_failed_file_raises_the_alert_for_the_window(journal):
    _sorted(journal, "ok.tif", "good")
    assert AlertKind.FILE_FAILED not in _alerts(journal)
    _sorted(journal, "broken.nid", "failed")
    alert = _alerts(journal)[AlertKind.FILE_FAILED]
    assert "1 file failed" in alert.message and "broken.nid" in alert.message and "not a Nanosurf" in alert.message
    later = time.time() + 61 * 60
    assert AlertKind.FILE_FAILED not in _alerts(journal, now=later)  # the window (60 min) has passed
    assert AlertKind.FILE_FAILED not in _alerts(journal, AlertsConfig(failures=False))


def test_files_waiting_while_nothing_finishes_is_a_stall(journal):
    waiting = journal.add("/inbox/waiting.tif", 10, 1)
    _sorted(journal, "done.tif", "good")
    journal.update(waiting, seen_at=time.time() - 11 * 60)  # waiting for 11 minutes
    assert AlertKind.STALL not in _alerts(journal)  # but a scan was finished just now
    alert = _alerts(journal, now=time.time() + 11 * 60)[AlertKind.STALL]
    assert alert.details["waiting"] == 1 and "1 file waiting" in alert.message
    assert AlertKind.STALL not in _alerts(journal, AlertsConfig(stall_minutes=0), now=time.time() + 11 * 60)
    journal.update(waiting, state=State.DONE, decision="good")
    assert AlertKind.STALL not in _alerts(journal, now=time.time() + 11 * 60)


# --- notifications -------------------------------------------------------------------------------


def _channels(smtp: LocalSMTP, webhook: LocalWebhook, **alerts) -> AlertsConfig:
    return AlertsConfig(
        **alerts,
        email=EmailConfig(
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            security="none",
            sender="afmwatch@lab.example.org",
            recipients=("afm-team@lab.example.org", "pi@lab.example.org"),
        ),
        webhook=WebhookConfig(url=webhook.url),
    )


def test_an_alert_is_announced_once_by_email_and_webhook_and_counted(journal):
    with serving(LocalSMTP()) as smtp, serving(LocalWebhook()) as webhook:
        settings = _channels(smtp, webhook, bad_in_a_row=3)
        metrics = Metrics()
        monitor = AlertMonitor(journal, metrics)
        for i in range(3):
            _sorted(journal, f"b{i}.tif", "bad")
        started = monitor.check(settings)
        assert [a.kind for a in started] == [AlertKind.BAD_IN_A_ROW]
        monitor.join(30)
        _sorted(journal, "b3.tif", "bad")  # the run goes on: no second notification
        assert monitor.check(settings) == []
        monitor.join(30)
        assert len(smtp.received) == 1 and len(webhook.received) == 1

        (mail,) = smtp.messages()
        assert "3 scans in a row decided bad" in mail["Subject"] and mail["Subject"].startswith("afmwatch on ")
        assert mail["To"] == "afm-team@lab.example.org, pi@lab.example.org"
        assert smtp.received[0]["rcpt"] == ["<afm-team@lab.example.org>", "<pi@lab.example.org>"]
        (post,) = webhook.received
        assert post["content_type"] == "application/json"
        assert "3 scans in a row decided bad: the tip is probably broken" in post["json"]["text"]
        assert post["json"]["afmwatch"]["kind"] == "bad_in_a_row"

        samples = metric_samples(metrics.exposition())
        assert samples['afmwatch_alert_active{alert="bad_in_a_row"}'] == 1
        assert samples['afmwatch_alert_active{alert="stall"}'] == 0
        assert samples['afmwatch_alerts_total{alert="bad_in_a_row"}'] == 1
        assert samples['afmwatch_alerts_total{alert="stall"}'] == 0  # every alert has a series, at 0 until it starts

        # a restarted daemon does not announce the same alert again
        assert AlertMonitor(journal, Metrics()).check(settings) == []
        _sorted(journal, "g.tif", "good")  # the alert ends ...
        assert monitor.check(settings) == []
        assert metric_samples(metrics.exposition())['afmwatch_alert_active{alert="bad_in_a_row"}'] == 0
        for i in range(3):  # ... and a new run is a new alert
            _sorted(journal, f"c{i}.tif", "bad")
        assert [a.kind for a in monitor.check(settings)] == [AlertKind.BAD_IN_A_ROW]
        monitor.join(30)
        assert len(smtp.received) == 2 and len(webhook.received) == 2
        assert metric_samples(metrics.exposition())['afmwatch_alerts_total{alert="bad_in_a_row"}'] == 2


def test_a_notification_that_cannot_be_sent_is_logged_and_never_raised(journal, capsys):
    from afmwatch.log import configure_logging

    configure_logging("info")
    with serving(LocalWebhook(status=500)) as webhook:
        closed = LocalSMTP()
        port = closed.port
        closed.server_close()  # nothing listens there any more
        settings = AlertsConfig(
            email=EmailConfig(
                smtp_host="127.0.0.1", smtp_port=port, security="none", sender="a@b.c", recipients=("d@e.f",)
            ),
            webhook=WebhookConfig(url=webhook.url),
        )
        _sorted(journal, "broken.nid", "failed")
        (alert,) = _alerts(journal).values()
        assert notify(alert, settings) == {"email": False, "webhook": False}
        assert len(webhook.received) == 1  # it was tried
    err = capsys.readouterr().err
    assert err.count("alert_notification_failed") == 2 and "HTTP Error 500" in err
    assert notify(alert, AlertsConfig()) == {}  # nothing configured: nothing sent


# --- the configuration ----------------------------------------------------------------------------


def test_alerts_config_defaults_and_every_error_names_its_key():
    config = config_from_dict({})
    assert config.alerts.bad_in_a_row == 5 and config.alerts.stall_minutes == 10.0 and config.alerts.failures
    assert config.alerts.email.smtp_host is None and config.alerts.webhook.url is None
    with pytest.raises(ConfigError) as caught:
        config_from_dict(
            {
                "alerts": {
                    "bad_in_a_row": -1,
                    "failure_window_minutes": 0,
                    "email": {"smtp_host": "smtp.lab", "smtp_port": 70000, "recipients": ["nobody"], "username": "u"},
                    "webhook": {"url": "ftp://hooks.example.org/x"},
                }
            }
        )
    errors = "\n".join(caught.value.errors)
    for expected in (
        "alerts.bad_in_a_row: expected at least 0, got -1",
        "alerts.failure_window_minutes: expected more than 0.0",
        "alerts.email.smtp_port: expected a TCP port (1-65535), got 70000",
        "alerts.email.sender: required with smtp_host",
        "alerts.email.recipients[0]: expected an e-mail address, got 'nobody'",
        "alerts.email.password_file: required with username",
        "alerts.webhook.url: expected an http:// or https:// URL, got 'ftp://hooks.example.org/x'",
    ):
        assert expected in errors
    with pytest.raises(ConfigError, match=r"alerts.email.from: unknown key"):
        config_from_dict({"alerts": {"email": {"from": "a@b.c"}}})
    with pytest.raises(ConfigError, match=r"alerts.email.security: expected one of 'starttls', 'ssl', 'none'"):
        config_from_dict({"alerts": {"email": {"security": "tls"}}})
    with pytest.raises(ConfigError, match=r"alerts.email.smtp_host: required when sender or recipients are set"):
        config_from_dict({"alerts": {"email": {"recipients": ["a@b.c"]}}})


# --- the daemon -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_daemon_announces_bad_scans_in_a_row_and_a_failed_file(tmp_path):
    model = tiny_model(tmp_path / "tiny.safetensors")
    every_scan_bad = {"metric": "completeness", "op": ">=", "threshold": 0, "decision": "bad", "reason": "test: bad"}
    with serving(LocalSMTP()) as smtp, serving(LocalWebhook()) as webhook:
        alerts = {
            "bad_in_a_row": 3,
            "email": {
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "security": "none",
                "sender": "afmwatch@lab.example.org",
                "recipients": ["afm-team@lab.example.org"],
            },
            "webhook": {"url": webhook.url},
        }
        config = write_config(tmp_path, model, rules=[every_scan_bad], alerts=alerts)
        inbox, out = tmp_path / "inbox", tmp_path / "out"
        daemon = Daemon(config).wait_ready()
        try:
            for i in range(3):
                scan_bytes_file(inbox / f".s{i}.tif", i)
                os.replace(inbox / f".s{i}.tif", inbox / f"s{i}.tif")
            (inbox / ".broken.nid").write_bytes(b"not a scan")
            os.replace(inbox / ".broken.nid", inbox / "broken.nid")
            wait_until(lambda: processed_count(out) >= 4, what="scans sorted")
            wait_until(lambda: len(webhook.received) >= 2 and len(smtp.received) >= 2, what="two notifications")
        finally:
            assert daemon.terminate() == 0
    kinds = sorted(post["json"]["afmwatch"]["kind"] for post in webhook.received)
    assert kinds == ["bad_in_a_row", "file_failed"]  # each once, although the daemon checked many times
    subjects = sorted(" ".join(str(mail["Subject"]).split()) for mail in smtp.messages())
    assert "1 file failed in the last 60 minutes (latest: broken.nid: not a Nanosurf" in subjects[0]
    assert "3 scans in a row decided bad" in subjects[1]
    started = {event["alert"] for event in daemon.events("alert_started")}
    assert started == {"bad_in_a_row", "file_failed"}
    assert len(daemon.events("alert_started")) == 2
    assert Path(out / "bad" / "s0.tif").exists()


def test_the_review_page_shows_the_alerts_the_daemon_announces(tmp_path):
    import yaml

    from afmwatch.review.alerts import current_alerts
    from afmwatch.review.context import ReviewContext

    config = tmp_path / "config.yaml"
    out, state = tmp_path / "out", tmp_path / "state"
    config.write_text(
        yaml.safe_dump({"output_root": str(out), "state_folder": str(state), "alerts": {"bad_in_a_row": 2}})
    )
    ctx = ReviewContext.open(config, token="t" * 32)
    assert current_alerts(ctx) == []
    journal = Journal(state)
    try:
        _sorted(journal, "b0.tif", "bad")
        _sorted(journal, "b1.tif", "bad")
        _sorted(journal, "broken.nid", "failed")
    finally:
        journal.close()
    banners = {alert["kind"]: alert for alert in current_alerts(ctx)}
    assert set(banners) == {"bad_in_a_row", "file_failed"}
    assert banners["bad_in_a_row"]["level"] == "error" and "2 scans in a row" in banners["bad_in_a_row"]["message"]
    assert banners["file_failed"]["level"] == "warning" and banners["file_failed"]["since"]
