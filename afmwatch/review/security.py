"""Who may read and who may change: the token, the session cookie, Host and Origin checks.

A web page on any site can make the operator's browser send requests to 127.0.0.1, and DNS rebinding
can even let it read the answers. So: every request must name a host we serve (the Host header), every
change must carry the token in the `X-Afmwatch-Token` header (a header a cross-site form cannot set,
and a cross-site script cannot read the token to set it) and, when the browser says where the request
came from (`Origin`), come from this server. Bound to another address than loopback, reading needs
the token too: a one-time login with it sets a session cookie. The token lives in
`<state_folder>/review-token` (mode 0600), so a script on the instrument PC run by the same user can
read it and use the API.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_FILE = "review-token"
TOKEN_HEADER = "x-afmwatch-token"
SESSION_COOKIE = "afmwatch_session"
PUBLIC_PATHS = ("/login", "/static/")  # served before the login (the login page and its style)


def load_or_create_token(state_folder: Path) -> str:
    """The review token, created (random, mode 0600) on the first start; a token file that others
    could read is tightened to 0600."""
    path = Path(state_folder) / TOKEN_FILE
    Path(state_folder).mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.is_symlink():
            raise OSError(f"{path} is a link; afmwatch does not follow links") from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        token = path.read_text(encoding="ascii").strip()
    else:
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    if len(token) < 16:
        raise OSError(f"{path} holds no usable token (delete it to make a new one)")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Guard:
    """The checks for one server: its token, the Host names it answers to, whether reading needs a login."""

    token: str
    hosts: frozenset[str]  # lower-case host names and addresses, without port
    port: int
    login_required: bool

    @classmethod
    def for_server(cls, token: str, host: str, port: int, extra_hosts: Iterable[str] = ()) -> Guard:
        """Loopback: localhost and the loopback addresses. Another address: that address, the machine's
        names, loopback, and `extra_hosts` (a DNS name people type)."""
        names = {"localhost", "127.0.0.1", "::1", host.lower().strip("[]")}
        if not is_loopback(host):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        names |= {h.lower() for h in extra_hosts}
        names.discard("0.0.0.0")
        names.discard("::")
        return cls(token=token, hosts=frozenset(names), port=port, login_required=not is_loopback(host))

    def host_allowed(self, host_header: str | None) -> bool:
        """The Host header names this server (with our port or none): a rebound DNS name does not."""
        if not host_header:
            return False
        parsed = urlsplit(f"//{host_header}")
        try:
            port = parsed.port
        except ValueError:
            return False
        name = (parsed.hostname or "").lower()
        return name in self.hosts and port in (None, self.port)

    def origin_allowed(self, origin: str | None) -> bool:
        """No Origin (a script, curl) or one of ours; `null` and other sites are refused."""
        if origin is None:
            return True
        parsed = urlsplit(origin)
        return parsed.scheme in ("http", "https") and self.host_allowed(parsed.netloc)

    def token_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    def session_value(self) -> str:
        """The session cookie: derived from the token, so a new token ends every session."""
        return hmac.new(self.token.encode(), b"afmwatch-review-session", hashlib.sha256).hexdigest()

    def session_ok(self, cookie: str | None) -> bool:
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session_value().encode())
