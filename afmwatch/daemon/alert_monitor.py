"""The daemon's side of alerts: every few seconds (the service's status tick) it reads the active alerts
from the journal, and for each alert that *starts* logs `alert_started`, counts it for Prometheus and
sends the notifications; an alert that ends logs `alert_cleared`. An alert that lasts is not announced
again, also not after a restart: the alerts already announced are kept in the journal's service table.

Notifications go out on a short-lived thread each, so a slow SMTP server never delays the daemon.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from afmwatch.config import AlertsConfig
from afmwatch.daemon.alert_notify import notify
from afmwatch.daemon.alerts import ALERT_KINDS, Alert, active_alerts
from afmwatch.daemon.journal import Journal
from afmwatch.daemon.metrics import Metrics

log = structlog.get_logger("afmwatch.alerts")

SERVICE_KEY = "alerts_announced"  # journal service table: kind -> when it started (epoch s)

Notify = Callable[[Alert, AlertsConfig], Any]


class AlertMonitor:
    """Announces alerts once, when they start. `check` is called from one thread (the service's)."""

    def __init__(self, journal: Journal, metrics: Metrics, send: Notify = notify):
        self.journal = journal
        self.metrics = metrics
        self.send = send
        self.announced: dict[str, float] = dict(journal.service().get(SERVICE_KEY) or {})
        self.threads: list[threading.Thread] = []

    def _read(self, settings: AlertsConfig, now: float) -> list[Alert]:
        db = sqlite3.connect(f"file:{self.journal.path}?mode=ro", uri=True, timeout=10)
        try:
            return active_alerts(db, settings, now)
        finally:
            db.close()

    def check(self, settings: AlertsConfig, now: float | None = None) -> list[Alert]:
        """Compare the journal's active alerts with those announced; announce the new ones (returned)."""
        now = time.time() if now is None else now
        try:
            alerts = self._read(settings, now)
        except sqlite3.Error as exc:  # a busy or locked journal: try again at the next tick
            log.warning("alert_check_failed", error=str(exc))
            return []
        active = {alert.kind.value: alert for alert in alerts}
        started = [alert for kind, alert in active.items() if kind not in self.announced]
        cleared = [kind for kind in self.announced if kind not in active]
        for kind in cleared:
            log.info("alert_cleared", alert=kind)
            del self.announced[kind]
        for alert in started:
            log.warning("alert_started", alert=alert.kind.value, message=alert.message, **alert.details)
            self.metrics.alert_started(alert.kind.value)
            self.announced[alert.kind.value] = alert.since
            thread = threading.Thread(
                target=self.send, args=(alert, settings), name=f"afmwatch-alert-{alert.kind.value}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        self.threads = [t for t in self.threads if t.is_alive()]
        self.metrics.set_alerts({kind.value: kind.value in active for kind in ALERT_KINDS})
        if started or cleared:
            self.journal.set_service({SERVICE_KEY: self.announced})
        return started

    def join(self, timeout: float) -> None:
        """Wait for notifications still being sent (at most `timeout` seconds in all)."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
