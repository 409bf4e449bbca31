"""The base class of afmwatch's own errors. Each failure domain has its class beside the code that raises
it (`ScanError` in `afmwatch.scan`, `ModelError` in `afmwatch.networks.model_file`, `ConfigError` in
`afmwatch.config`, `ActError` and `ReaderCrashed` in the daemon), each under `AfmwatchError`, so that a
boundary can catch "ours" in one clause while a bug in our own code still surfaces as a bug."""

from __future__ import annotations


class AfmwatchError(Exception):
    """Something afmwatch expected can go wrong went wrong; the message says what, for a microscopist."""
