"""Test seams: a pause the end-to-end tests need to hit a window of a few milliseconds every time.

Read once, when the service starts, from the environment (`AFMWATCH_TEST_PAUSE_BEFORE_MOVE=GLOB:SECONDS`,
e.g. `*rewrite*.tif:3`): the act thread then waits that long, and logs `test_pause_before_move`,
after a matching scan's plan is committed and before it is moved, which is where a file rewritten
during sorting must be caught. Unset in production; nothing else reads it.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("afmwatch.faults")

PAUSE_BEFORE_MOVE = "AFMWATCH_TEST_PAUSE_BEFORE_MOVE"


@dataclass(frozen=True)
class Faults:
    pause_before_move: tuple[str, float] | None = None  # (glob on the file name, seconds)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Faults:
        value = environ.get(PAUSE_BEFORE_MOVE)
        if not value:
            return cls()
        pattern, _, seconds = value.rpartition(":")
        return cls(pause_before_move=(pattern, float(seconds)))

    def before_move(self, path: Path) -> None:
        if self.pause_before_move is None:
            return
        pattern, seconds = self.pause_before_move
        if fnmatch.fnmatch(path.name, pattern):
            log.warning("test_pause_before_move", file=str(path), seconds=seconds)
            time.sleep(seconds)
