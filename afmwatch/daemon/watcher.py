"""Watching the export folder: watchdog's native observer (inotify) or polling for network shares.

The event handler only records paths (`Settler.touch`); it never reads a file. Files that were
already there at start are found by `scan_folder`, not only by events.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from afmwatch.config import WatchConfig

# The events that can announce a scan. Opening, reading and closing a file unchanged (as the daemon's own
# readers do, once per scan) and deletions (a sorted scan moved out) are not asked for: inotify then does
# not deliver them at all, rather than the handler dropping each one in Python.
WATCHED_EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]


def wanted(path: Path, root: Path, watch: WatchConfig) -> bool:
    """Whether `path` (below `root`) is a scan to process: no part of it excluded, its name included.

    With no `include` globs, every format the readers know is included. A symbolic link is never
    wanted: following it would read, and move, a file outside the configured folders.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    if _through_link(root, parts):  # a link, or anything under a linked folder, at any depth
        return False
    if not parts or (len(parts) > 1 and not watch.recursive):
        return False
    for part in parts:
        if any(fnmatch.fnmatch(part, pattern) for pattern in watch.exclude):
            return False
    name = parts[-1]
    if watch.include:
        return any(fnmatch.fnmatch(name.lower(), pattern.lower()) for pattern in watch.include)
    from afmwatch.readers import is_supported

    return is_supported(path)


def _through_link(root: Path, parts: tuple[str, ...]) -> bool:
    """Whether any step from `root` down to the file is a symbolic link (a link to a folder inside the
    watch folder too: following it would see the same scans twice, or loop)."""
    here = root
    for part in parts:
        here = here / part
        if here.is_symlink():
            return True
    return False


def scan_folder(root: Path, watch: WatchConfig) -> Iterator[Path]:
    """Every wanted file below `root` (the start-up scan, and the safety net after a restart)."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in watch.exclude))
        if not watch.recursive:
            dirs[:] = []
        for name in sorted(files):
            path = here / name
            if wanted(path, root, watch):
                yield path


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, watch: WatchConfig, touch: Callable[[Path], None]):
        self.root = root
        self.watch = watch
        self.touch = touch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                # a folder moved in whole (or created with files faster than inotify could add a watch)
                folder = Path(os.fsdecode(event.dest_path if event.event_type == "moved" else event.src_path))
                for path in scan_folder(folder, self.watch) if folder.is_dir() else ():
                    if wanted(path, self.root, self.watch):
                        self.touch(path)
            return
        if event.event_type in ("created", "modified", "closed"):
            path = Path(os.fsdecode(event.src_path))
        elif event.event_type == "moved":
            path = Path(os.fsdecode(event.dest_path))  # rename-into-place: the final name counts
        else:
            return
        if wanted(path, self.root, self.watch):
            self.touch(path)


def start_observer(root: Path, watch: WatchConfig, touch: Callable[[Path], None]) -> BaseObserver:
    """Start watching `root`; returns the running observer (stop() and join() it)."""
    if watch.observer == "polling":
        observer: BaseObserver = PollingObserver(timeout=watch.polling_interval_seconds)
    else:
        observer = Observer()
    observer.schedule(_Handler(root, watch, touch), str(root), recursive=watch.recursive, event_filter=WATCHED_EVENTS)
    observer.daemon = True
    observer.start()
    return observer
