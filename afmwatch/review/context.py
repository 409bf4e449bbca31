"""What every part of the review page shares: the config, the folders, the journal, the token.

One frozen object built once by `afmwatch review` (`ReviewContext.open`) and handed to the app and to
every route module (`afmwatch.review.app`, `afmwatch.review.loop_routes`), so no route reads the
environment or opens files of its own choosing. The journal is opened per request (`connect`), in
short transactions, because the daemon writes to it at the same time (SQLite WAL: readers never
block the writer, and a writer waits at most `busy_timeout`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from afmwatch.config import Config, ConfigError, load_config
from afmwatch.daemon.journal import Journal, journal_path, state_folder

BUSY_TIMEOUT_MS = 10_000  # the daemon commits in milliseconds; a request waits for it, never fails at once


@dataclass(frozen=True)
class ReviewContext:
    """The review page's settings and resources, fixed for the server's lifetime.

    `config` is the config as it was at start; `current_config()` reads the file again (the rules
    what-if saves to it). `read_only` serves the page without any action.
    """

    config: Config
    config_path: Path
    state_folder: Path
    output_root: Path
    token: str
    read_only: bool = False

    @classmethod
    def open(cls, config_path: Path, *, token: str, read_only: bool = False) -> ReviewContext:
        """Load the config and create the journal's tables (the review page's included) when missing."""
        config = load_config(config_path)
        if config.output_root is None:
            raise ConfigError(str(config_path), ["output_root: the review page needs the folder the daemon sorts into"])
        folder = state_folder(config)
        Journal(folder).close()  # creates the journal (and its schema) beside a daemon that never ran
        return cls(
            config=config,
            config_path=Path(config_path).resolve(),
            state_folder=folder,
            output_root=config.output_root.resolve(),
            token=token,
            read_only=read_only,
        )

    @property
    def journal_path(self) -> Path:
        return journal_path(self.state_folder)

    def current_config(self) -> Config:
        """The config file as it is now (it may have been saved from the page since the start)."""
        return load_config(self.config_path)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection to the journal (autocommit; `BEGIN IMMEDIATE` for writes), closed after use.

        Rows are `sqlite3.Row`. Keep transactions short: the daemon writes to the same file.
        """
        db = sqlite3.connect(self.journal_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous=FULL")  # a correction's intent must survive a power cut
            yield db
        finally:
            db.close()
