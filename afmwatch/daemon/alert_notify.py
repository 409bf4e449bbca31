"""Alert notifications: an e-mail through SMTP (smtplib) and a JSON webhook (`{"text": ...}`, what Slack,
Teams and Mattermost incoming webhooks accept), each sent only when configured.

A notification that cannot be sent (server down, refused, timed out) is logged and reported as
False: telling someone is worth trying, never worth stopping the daemon for.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

import structlog

from afmwatch.config import AlertsConfig, EmailConfig, WebhookConfig
from afmwatch.daemon.alerts import Alert

log = structlog.get_logger("afmwatch.alerts")

SEND_ERRORS = (OSError, smtplib.SMTPException, urllib.error.URLError, ssl.SSLError, socket.timeout, ValueError)


def alert_text(alert: Alert, host: str) -> str:
    """One line for a chat and an e-mail subject: where, what."""
    return f"afmwatch on {host}: {alert.message}"


def send_email(alert: Alert, settings: EmailConfig, host: str) -> None:
    """Send one e-mail about `alert`; raises one of SEND_ERRORS when it cannot."""
    assert settings.smtp_host is not None and settings.sender is not None  # checked by the config
    message = EmailMessage()
    message["Subject"] = alert_text(alert, host)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    details = "\n".join(f"  {key}: {value}" for key, value in alert.details.items())
    since = alert.to_dict()["since"]
    message.set_content(f"{alert.message}\n\nalert: {alert.kind.value}\nsince: {since}\n{details}\n")
    smtp_class = smtplib.SMTP_SSL if settings.security == "ssl" else smtplib.SMTP
    with smtp_class(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds) as smtp:
        if settings.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.username is not None:
            assert settings.password_file is not None  # checked by the config
            password = settings.password_file.read_text(encoding="utf-8").strip()
            smtp.login(settings.username, password)
        smtp.send_message(message)


def send_webhook(alert: Alert, settings: WebhookConfig, host: str) -> None:
    """POST `{"text": ...}` (plus the alert's fields) to the webhook; raises one of SEND_ERRORS."""
    assert settings.url is not None
    body = json.dumps({"text": alert_text(alert, host), "afmwatch": alert.to_dict()}).encode("utf-8")
    request = urllib.request.Request(
        settings.url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
        if not 200 <= response.status < 300:
            raise ValueError(f"the webhook answered HTTP {response.status}")


def notify(alert: Alert, settings: AlertsConfig, host: str | None = None) -> dict[str, bool]:
    """Send `alert` through every configured channel; {channel: sent} (empty when none is configured).
    Failures are logged (`alert_notification_failed`) and never raised."""
    host = host or socket.gethostname()
    channels = []
    if settings.email.smtp_host is not None:
        channels.append(("email", lambda: send_email(alert, settings.email, host)))
    if settings.webhook.url is not None:
        channels.append(("webhook", lambda: send_webhook(alert, settings.webhook, host)))
    sent: dict[str, bool] = {}
    for channel, send in channels:
        try:
            send()
            sent[channel] = True
            log.info("alert_notified", alert=alert.kind.value, channel=channel)
        except SEND_ERRORS as exc:
            sent[channel] = False
            log.warning("alert_notification_failed", alert=alert.kind.value, channel=channel, error=str(exc))
    return sent
