"""File names of any bytes and of any length up to 255 bytes: recorded as valid text, read back exactly,
and sidecar, preview and temp names that always fit."""

from __future__ import annotations

import json
import os

import pytest

from afmwatch.daemon.sidecar import preview_path, sidecar_path
from afmwatch.durable import atomic_write_bytes, temp_prefix
from afmwatch.names import NAME_MAX, clean, fitted, path_text, text_path


@pytest.mark.parametrize(
    "raw",
    [b"scan.tif", b"bad\xff\xfe.tif", b"back\\slash.tif", b"looks\\xffescaped.tif", b"\\\\x41", "é".encode() * 10],
)
def test_any_bytes_round_trip_through_valid_text(tmp_path, raw):
    path = tmp_path / os.fsdecode(raw)
    text = path_text(path)
    text.encode("utf-8")  # valid text for SQLite, JSON and logs
    json.loads(json.dumps(text, ensure_ascii=False))
    assert os.fsencode(text_path(text)) == os.fsencode(path)
    if b"\\" not in raw and b"\xff" not in raw:
        assert text == str(path)  # ordinary names are recorded as they are


def test_clean_shows_undecodable_bytes_for_messages():
    assert clean(os.fsdecode(b"bad\xff.tif: truncated")) == "bad\\xff.tif: truncated"
    assert clean("plain") == "plain"


@pytest.mark.parametrize("stem", ["a" * 246, "é" * 123, os.fsdecode(b"\xff" * 246)])
def test_names_too_long_for_their_sidecar_are_cut_with_a_hash_mark_and_fit(tmp_path, stem):
    scan = tmp_path / f"{stem}.tif"
    assert len(os.fsencode(scan.name)) == 250
    for made in (sidecar_path(scan), preview_path(scan)):
        assert len(os.fsencode(made.name)) <= NAME_MAX and "~" in made.name
        made.name.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    assert sidecar_path(scan).name.endswith(".tif.afmwatch.json")
    other = tmp_path / f"{stem[:-1]}b.tif"
    assert sidecar_path(other) != sidecar_path(scan)  # cut alike, kept apart by the hash
    atomic_write_bytes(sidecar_path(scan), b"{}")  # its temp name fits too
    assert sidecar_path(scan).read_bytes() == b"{}"
    assert len(os.fsencode(temp_prefix(sidecar_path(scan).name))) + 8 + len(".part") <= NAME_MAX


def test_short_names_keep_their_usual_sidecar_name(tmp_path):
    assert sidecar_path(tmp_path / "x.tif").name == "x.tif.afmwatch.json"
    assert fitted("x", ".tif") == "x.tif"
