"""The review page's alert banner and `GET /api/alerts`: the alerts active now, read from the journal by
the same function the daemon announces them with (`afmwatch.daemon.alerts.active_alerts`), so the page
shows exactly what the operator was e-mailed about, also while the daemon is not running."""

from __future__ import annotations

from typing import Any

from afmwatch.daemon.alerts import AlertKind, active_alerts
from afmwatch.review.context import ReviewContext

LEVELS = {AlertKind.BAD_IN_A_ROW: "error", AlertKind.STALL: "error", AlertKind.FILE_FAILED: "warning"}


def current_alerts(ctx: ReviewContext) -> list[dict[str, Any]]:
    """Each active alert as the banner shows it: kind, level (error/warning), message, since, details."""
    with ctx.connect() as db:
        alerts = active_alerts(db, ctx.config.alerts)
    return [{**alert.to_dict(), "level": LEVELS[alert.kind], "at": alert.to_dict()["since"]} for alert in alerts]
