"""A real `afmwatch run` against what a hostile user or a bad day in the lab puts in the watch folder:
names of any bytes and of 250 bytes, a file rewritten while it is sorted, files swapped for a FIFO or a
link to /dev/zero while they settle, files the service may not read, a file and a folder of the same
name, identical files arriving together, a folder link back into the watch folder, a slow writer that
pauses longer than the settle time. Every input ends exactly once, byte-identical, with a sidecar whose
sha256 is the file's, and the service keeps running."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from daemon_support import (
    Daemon,
    assert_each_input_exactly_once,
    processed_count,
    scan_bytes_file,
    sha256,
    sidecars,
    sorted_files,
    wait_until,
    write_config,
)

from afmwatch.daemon.sidecar import sidecar_path, validate
from afmwatch.names import NAME_MAX, path_text

pytestmark = pytest.mark.slow


def _drop(inbox: Path, name: str, seed: int, staging: Path) -> str:
    """A scan written beside the watch folder, then renamed into it (as careful exporters do)."""
    staged = scan_bytes_file(staging / name, seed)
    digest = sha256(staged)
    os.replace(staged, inbox / name)
    return digest


def _journal(state: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(f"file:{state / 'journal.sqlite3'}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM files ORDER BY id")]


def _entry(state: Path, name: str) -> dict | None:
    rows = [row for row in _journal(state) if row["path"].endswith("/" + path_text(name))]
    return rows[-1] if rows else None


def _sidecar(path: Path) -> dict:
    data = json.loads(sidecar_path(path).read_bytes().decode("utf-8"))  # strict UTF-8: valid text
    validate(data)
    return data


def test_names_of_any_bytes_and_250_bytes_are_sorted_once_and_a_restart_is_clean(tmp_path, model):
    config = write_config(tmp_path, model)
    inbox, out, state, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "state", tmp_path / "staging"
    names = [
        os.fsdecode(b"bad\xff\xfe.tif"),  # not UTF-8
        "a" * 246 + ".tif",  # 250 bytes: its sidecar name would be 264
        "é" * 123 + ".tif",  # 250 bytes of two-byte characters
        os.fsdecode(b"\xff" * 246 + b".tif"),  # both at once
        "back\\slash\\xff.tif",  # a backslash, and text that looks like an escape
    ]
    expected = {names[0]: _drop(inbox, names[0], 1, staging)}  # present at start: the folder scan
    daemon = Daemon(config).wait_ready()
    try:
        for i, name in enumerate(names[1:], 2):
            expected[name] = _drop(inbox, name, i, staging)
        wait_until(lambda: processed_count(out) == len(names), what="every odd name sorted")
        assert daemon.process.poll() is None
    finally:
        assert daemon.terminate() == 0
    assert_each_input_exactly_once(out, inbox, expected)
    for path in sorted_files(out):
        sidecar = _sidecar(path)
        assert len(os.fsencode(sidecar_path(path).name)) <= NAME_MAX
        assert sidecar["sidecar_path"] == path_text(sidecar_path(path))
        assert sidecar["original_path"] == path_text(inbox / path.name)
        entry = _entry(state, path.name)
        assert entry is not None and entry["state"] in ("done", "failed")
        assert entry["final_path"] == path_text(path) and entry["final_path"].encode("utf-8")  # valid text
    long_sidecar = sidecar_path(next(p for p in sorted_files(out) if p.name.startswith("aaaa")))
    assert "~" in long_sidecar.name and long_sidecar.name.endswith(".tif.afmwatch.json")
    # a restart reconciles cleanly and sorts nothing again
    again = Daemon(config).wait_ready()
    try:
        after = _drop(inbox, "after.tif", 9, staging)
        wait_until(lambda: processed_count(out) == len(names) + 1, what="a scan after the restart")
    finally:
        assert again.terminate() == 0
    assert "reconcile_failed" not in again.log() and "Traceback" not in again.log() + daemon.log()
    assert r"/bad\\xff\\xfe.tif" in daemon.log()  # logged escaped: the JSON of the text bad\xff\xfe.tif
    assert_each_input_exactly_once(out, inbox, {**expected, "after.tif": after})


def test_a_file_rewritten_while_it_is_sorted_is_classified_as_what_it_now_is(tmp_path, model):
    """The test seam pauses the act thread after the plan is committed and before the move, where a
    rewrite used to be moved under the old sidecar; the rewrite lands in that pause every time."""
    config = write_config(tmp_path, model)
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    daemon = Daemon(config, env={"AFMWATCH_TEST_PAUSE_BEFORE_MOVE": "rewrite-*.tif:2"}).wait_ready()
    try:
        _drop(inbox, "rewrite-renamed.tif", 1, staging)
        _drop(inbox, "rewrite-in-place.tif", 2, staging)
        wait_until(lambda: len(daemon.events("test_pause_before_move")) >= 2, what="both scans paused before the move")
        renamed = _drop(inbox, "rewrite-renamed.tif", 11, staging)  # new content renamed over the file
        new_bytes = scan_bytes_file(staging / "new.tif", 12).read_bytes()
        with open(inbox / "rewrite-in-place.tif", "r+b") as handle:  # the same file, written again
            handle.write(new_bytes)
            handle.truncate()
        in_place = sha256(inbox / "rewrite-in-place.tif")
        wait_until(lambda: processed_count(out) == 2, what="both rewrites sorted")
        assert daemon.process.poll() is None
    finally:
        assert daemon.terminate() == 0
    assert_each_input_exactly_once(out, inbox, {"rewrite-renamed.tif": renamed, "rewrite-in-place.tif": in_place})
    assert len(daemon.events("scan_changed")) >= 2
    assert not list(out.rglob("*.afmwatch.png")) or len(list(out.rglob("*.afmwatch.png"))) == 2  # no stale preview


def test_a_fifo_a_device_or_a_link_swapped_in_never_stalls_a_reader(tmp_path, model):
    config = write_config(tmp_path, model, settle={"settle_seconds": 1.5})
    inbox, out, state, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "state", tmp_path / "staging"
    outside = scan_bytes_file(tmp_path / "outside.tif", 7)
    daemon = Daemon(config).wait_ready()
    try:
        for name, seed in (("fifo-swap.tif", 1), ("zero-swap.tif", 2), ("outside-swap.tif", 3)):
            _drop(inbox, name, seed, staging)
        wait_until(lambda: all(_entry(state, n) for n in ("fifo-swap.tif", "zero-swap.tif", "outside-swap.tif")))
        os.mkfifo(staging / "fifo")
        os.replace(staging / "fifo", inbox / "fifo-swap.tif")  # swapped while it settles
        (staging / "zero").symlink_to("/dev/zero")
        os.replace(staging / "zero", inbox / "zero-swap.tif")
        (staging / "outside").symlink_to(outside)
        os.replace(staging / "outside", inbox / "outside-swap.tif")
        os.mkfifo(inbox / "pipe.tif")  # arriving as what they are
        os.mknod(inbox / "device.tif", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
        expected = {f"after-{i}.tif": _drop(inbox, f"after-{i}.tif", 20 + i, staging) for i in range(4)}
        wait_until(lambda: processed_count(out) == 4, what="scans after the swaps sorted")
        for name in ("fifo-swap.tif", "zero-swap.tif", "outside-swap.tif"):
            wait_until(lambda n=name: (_entry(state, n) or {}).get("state") == "vanished", what=f"{name} ignored")
            assert "not a regular file" in _entry(state, name)["error"]
        assert daemon.process.poll() is None
    finally:
        assert daemon.terminate() == 0  # no reader parked in a read that never ends
    for name in ("fifo-swap.tif", "pipe.tif"):
        assert stat.S_ISFIFO(os.lstat(inbox / name).st_mode)
        os.unlink(inbox / name)
    assert stat.S_ISCHR(os.lstat(inbox / "device.tif").st_mode)
    for name in ("zero-swap.tif", "outside-swap.tif", "device.tif"):
        os.unlink(inbox / name)
    assert_each_input_exactly_once(out, inbox, expected)
    assert daemon.events("not_a_regular_file")


def _without_root_override() -> tuple[str, ...]:
    """Run the service as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: mode bits then apply
    to it as to any user (as root, mode 000 is still readable)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to run the service without root's permission override")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--")


def test_files_the_service_may_not_read_fail_at_once_and_never_stay_acting(tmp_path, model):
    config = write_config(tmp_path, model, settle={"max_attempts": 5})
    inbox, out, state, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "state", tmp_path / "staging"
    digests = {}
    for name, seed in (("mode-000.tif", 1), ("other-owner.tif", 2)):
        digests[name] = sha256(scan_bytes_file(staging / name, seed))
    (staging / "mode-000.tif").chmod(0)
    os.chown(staging / "other-owner.tif", 65534, 65534)
    (staging / "other-owner.tif").chmod(0o600)
    (inbox / "locked-folder").mkdir()
    digests["locked-folder/stuck.tif"] = sha256(scan_bytes_file(inbox / "locked-folder" / "stuck.tif", 3))
    (inbox / "locked-folder" / "stuck.tif").chmod(0)
    (inbox / "locked-folder").chmod(0o555)  # neither readable nor movable: failed where it is
    daemon = Daemon(config, prefix=_without_root_override()).wait_ready()
    try:
        for name in ("mode-000.tif", "other-owner.tif"):
            os.replace(staging / name, inbox / name)
        wait_until(lambda: processed_count(out) == 3, what="unreadable scans recorded as failed")
        good = _drop(inbox, "after.tif", 9, staging)
        wait_until(lambda: processed_count(out) == 4, what="a readable scan after them")
        assert daemon.process.poll() is None
    finally:
        assert daemon.terminate() == 0
    for name in ("mode-000.tif", "other-owner.tif"):
        failed = out / "failed" / name
        failed.chmod(0o600)
        assert sha256(failed) == digests[name]
        sidecar = _sidecar(failed)
        assert sidecar["decision"] == "failed" and sidecar["settle_attempts"] == 1
        assert "no permission to read the file" in sidecar["errors"][-1]
    stuck = inbox / "locked-folder" / "stuck.tif"
    (inbox / "locked-folder").chmod(0o755)
    stuck.chmod(0o600)
    assert sha256(stuck) == digests["locked-folder/stuck.tif"]
    in_place = _sidecar(out / "failed" / "locked-folder" / "stuck.tif")
    assert in_place["final_path"] == str(stuck) and "stays where it is" in in_place["errors"][-1]
    assert sha256(next(p for p in sorted_files(out) if p.name == "after.tif")) == good
    assert {row["state"] for row in _journal(state)} == {"done", "failed"}  # nothing left acting


def test_a_file_and_a_folder_of_the_same_name_both_sort(tmp_path, model, samples):
    config = write_config(tmp_path, model)
    inbox, out, state, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "state", tmp_path / "staging"
    png = (samples / "png" / "minicircle_colorbar_afmhot.png").read_bytes()  # not a TIFF: failed/ at once
    daemon = Daemon(config).wait_ready()
    try:
        (staging).mkdir()
        (staging / "scan.tif").write_bytes(png)
        os.replace(staging / "scan.tif", inbox / "scan.tif")
        wait_until(lambda: processed_count(out) == 1, what="the file sorted")
        (staging / "folder").mkdir()
        for name in ("a.tif", "b.tif"):
            (staging / "folder" / name).write_bytes(png + name.encode())
        os.replace(staging / "folder", inbox / "scan.tif")  # now a folder of that name
        wait_until(lambda: processed_count(out) == 3, what="the folder's scans sorted")
        assert daemon.process.poll() is None
    finally:
        assert daemon.terminate() == 0
    assert (out / "failed" / "scan.tif").is_file()
    assert sorted(p.name for p in (out / "failed" / "scan-1.tif").iterdir() if not p.name.endswith(".json")) == [
        "a.tif",
        "b.tif",
    ]
    assert {row["state"] for row in _journal(state)} == {"failed"}


def test_identical_files_arriving_together_are_classified_once(tmp_path, model):
    config = write_config(tmp_path, model)
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    original = scan_bytes_file(staging / "original.tif", 5)
    digest = sha256(original)
    names = [f"copy-{i}.tif" for i in range(4)]
    for name in names:
        shutil.copyfile(original, staging / name)
    daemon = Daemon(config).wait_ready()
    try:
        for name in names:
            os.replace(staging / name, inbox / name)
        wait_until(lambda: processed_count(out) == len(names), what="every copy sorted")
    finally:
        assert daemon.terminate() == 0
    assert_each_input_exactly_once(out, inbox, dict.fromkeys(names, digest))
    reports = [json.loads(p.read_text()) for p in sidecars(out)]
    classified = [r for r in reports if r["duplicate_of"] is None]
    assert len(classified) == 1, "the first is classified, the others wait for it and are its duplicates"
    assert {r["duplicate_of"] for r in reports if r["duplicate_of"]} == {classified[0]["final_path"]}
    assert {r["decision"] for r in reports} == {classified[0]["decision"]}


def test_a_folder_link_back_into_the_watch_folder_is_never_followed(tmp_path, model):
    config = write_config(tmp_path, model)
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    (inbox / "session").mkdir()
    expected = {"first.tif": _drop(inbox / "session", "first.tif", 1, staging)}
    (inbox / "loop").symlink_to(inbox / "session", target_is_directory=True)  # there at start
    (inbox / "session" / "deeper").mkdir()
    (inbox / "session" / "deeper" / "up").symlink_to(inbox, target_is_directory=True)  # a link at depth
    daemon = Daemon(config).wait_ready()
    try:
        (inbox / "later-loop").symlink_to(inbox / "session", target_is_directory=True)  # arriving
        expected["second.tif"] = _drop(inbox / "session", "second.tif", 2, staging)
        wait_until(lambda: processed_count(out) == 2, what="both scans sorted")
        with contextlib.suppress(AssertionError):  # time for a link to be (wrongly) followed
            wait_until(lambda: processed_count(out) > 2, timeout=3.0)
    finally:
        assert daemon.terminate() == 0
    assert sorted(p.relative_to(out).parts[1:] for p in sorted_files(out)) == [
        ("session", "first.tif"),
        ("session", "second.tif"),
    ]
    for name, digest in expected.items():
        (sorted_file,) = [p for p in sorted_files(out) if p.name == name]
        assert sha256(sorted_file) == digest and _sidecar(sorted_file)["sha256"] == digest
    assert (inbox / "loop").is_symlink() and (inbox / "later-loop").is_symlink()


def test_a_slow_writer_pausing_longer_than_settle_is_read_only_when_the_ibw_is_complete(tmp_path, model, samples):
    config = write_config(tmp_path, model)  # settle 0.3 s
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    whole = (samples / "ibw" / "ARHeight_0000.ibw").read_bytes()
    daemon = Daemon(config).wait_ready()
    try:
        with open(inbox / "slow.ibw", "wb") as handle:
            handle.write(whole[: len(whole) // 3])  # the header and a third of the wave
            handle.flush()
            wait_until(lambda: daemon.events("scan_incomplete"), what="the file seen as incomplete, not read")
            with contextlib.suppress(AssertionError):  # quiet for several settle times: still not read
                wait_until(lambda: processed_count(out) > 0, timeout=2.0)
            assert processed_count(out) == 0
            handle.write(whole[len(whole) // 3 :])
        wait_until(lambda: processed_count(out) == 1, what="the completed file sorted")
        assert daemon.process.poll() is None
    finally:
        assert daemon.terminate() == 0
    (sorted_file,) = sorted_files(out)
    assert sorted_file.read_bytes() == whole
    sidecar = _sidecar(sorted_file)
    assert sidecar["sha256"] == sha256(sorted_file) and sidecar["decision"] != "failed"
    assert sidecar["format"] == "ibw" and sidecar["settle_attempts"] == 1
