"""A scan is opened once, below the watch folder, never through a link and never blocking, and moved
only while its path still names the file that was read."""

from __future__ import annotations

import os
import stat

import pytest
from daemon_support import scan_bytes_file, sha256

from afmwatch.daemon.identity import NotRegularFile, copy_hashed, open_below, still_same
from afmwatch.durable import SourceChanged, safe_move


def test_a_regular_file_is_hashed_and_copied_from_its_descriptor(tmp_path):
    scan = scan_bytes_file(tmp_path / "inbox" / "deep" / "x.tif", 1)
    read = sha256(scan)
    fd, identity = open_below(tmp_path / "inbox", scan)
    try:
        os.replace(scan_bytes_file(tmp_path / "other.tif", 2), scan)  # the path now names another file
        assert copy_hashed(fd, identity, tmp_path / "copy" / "x.tif") == read  # what was opened is read
    finally:
        os.close(fd)
    assert sha256(tmp_path / "copy" / "x.tif") == read and sha256(scan) != read
    assert not still_same(scan, identity)


def test_fifos_devices_and_links_at_any_depth_are_refused_without_blocking(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "real").mkdir(parents=True)
    scan_bytes_file(inbox / "real" / "x.tif", 1)
    os.mkfifo(inbox / "pipe.tif")  # opening it to read without O_NONBLOCK would wait for a writer forever
    os.mknod(inbox / "zero.tif", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    (inbox / "to-zero.tif").symlink_to("/dev/zero")
    (inbox / "linked").symlink_to(inbox / "real", target_is_directory=True)
    refused = {
        "pipe.tif": "FIFO",
        "zero.tif": "character device",
        "to-zero.tif": "symbolic link",
        "linked/x.tif": "link or not a folder",
    }
    for name, words in refused.items():
        with pytest.raises(NotRegularFile, match=words):
            open_below(inbox, inbox / name)
    fd, _ = open_below(inbox, inbox / "real" / "x.tif")
    os.close(fd)


def test_a_move_refuses_a_file_that_is_not_the_one_planned(tmp_path):
    scan = scan_bytes_file(tmp_path / "x.tif", 1)
    fd, identity = open_below(tmp_path, scan)
    os.close(fd)
    os.replace(scan_bytes_file(tmp_path / "new.tif", 2), scan)
    new = sha256(scan)
    with pytest.raises(SourceChanged):
        safe_move(scan, tmp_path / "out" / "x.tif", expect=identity.matches)
    assert sha256(scan) == new and not (tmp_path / "out" / "x.tif").exists()  # nothing moved
    fd, identity = open_below(tmp_path, scan)
    os.close(fd)
    assert safe_move(scan, tmp_path / "out" / "x.tif", expect=identity.matches) == tmp_path / "out" / "x.tif"
