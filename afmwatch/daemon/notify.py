"""systemd's notify protocol, by hand: datagrams to the unix socket named in $NOTIFY_SOCKET.

READY=1 once the model is loaded and the folder scanned, STATUS=... lines with counts, WATCHDOG=1
pings (at most every half of $WATCHDOG_USEC), RELOADING=1 / STOPPING=1 around SIGHUP and SIGTERM.
Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("afmwatch.notify")


class Notifier:
    def __init__(self, socket_path: str | None = None, watchdog_usec: int | None = None):
        self.address = None
        if socket_path:
            # a leading '@' names a socket in the abstract namespace
            self.address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._last_ping = 0.0
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """Read $NOTIFY_SOCKET and $WATCHDOG_USEC (honouring $WATCHDOG_PID) once, at start-up."""
        usec = environ.get("WATCHDOG_USEC")
        watchdog_pid = environ.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid.isdigit() and int(watchdog_pid) != os.getpid():
            usec = None  # the watchdog is meant for another process
        return cls(environ.get("NOTIFY_SOCKET"), int(usec) if usec and usec.isdigit() else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of `KEY=value` lines; False (and a log line) if it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message, self.address)
                return True
            except OSError as exc:
                log.warning("notify_failed", socket=self.address.replace("\0", "@"), error=str(exc))
                return False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def reloaded(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        """Ping the systemd watchdog, rate-limited to half its timeout."""
        if self.address is None or self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval / 2:  # a quarter of the timeout: margin for a slow batch
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
