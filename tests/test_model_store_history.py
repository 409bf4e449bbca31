"""The model store keeps every promoted model: `models history` lists the installations, `models rollback`
makes any earlier model active again, verified like a promotion."""

from __future__ import annotations

import json

import pytest

from afmwatch.cli import main
from afmwatch.networks import store
from afmwatch.networks.model_file import ModelError


def _models(folder, *argv: str) -> int:
    return main(["--log-level", "warning", "models", "--model-folder", str(folder), *argv])


def test_rollback_restores_the_previous_model_and_any_named_one(tmp_path, make_classifier_file, capsys):
    first = make_classifier_file(tmp_path / "first.safetensors", seed=1)
    second = make_classifier_file(tmp_path / "second.safetensors", seed=2)
    third = make_classifier_file(tmp_path / "third.safetensors", seed=3)
    folder = tmp_path / "store"
    active = folder / store.ACTIVE_NAME
    for model in (first, second, third):
        assert _models(folder, "promote", str(model)) == 0
    assert active.read_bytes() == third.read_bytes()
    capsys.readouterr()

    assert _models(folder, "rollback") == 0  # no name: the model active before this one
    assert "second.safetensors is the active model again" in capsys.readouterr().out
    assert active.read_bytes() == second.read_bytes()

    assert _models(folder, "rollback", "first") == 0  # any model the store kept, by name
    assert active.read_bytes() == first.read_bytes()
    capsys.readouterr()
    assert {p.name for p in folder.glob("*.safetensors")} >= {
        "first.safetensors",
        "second.safetensors",
        "third.safetensors",
    }

    assert _models(folder, "history", "--json") == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["action"], e["name"]) for e in entries] == [
        ("promote", "first"),
        ("promote", "second"),
        ("promote", "third"),
        ("rollback", "second"),
        ("rollback", "first"),
    ]
    assert entries[0]["replaced"] is None and entries[3]["replaced"]["name"] == "third"
    assert entries[4]["sha256"] == store.sha256_file(first)
    assert _models(folder, "history") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and "rollback" in lines[-1] and "first" in lines[-1]

    assert _models(folder, "rollback") == 0  # the one before "first" was "second"
    assert active.read_bytes() == second.read_bytes()


def test_rollback_refuses_what_it_cannot_verify_and_keeps_the_active_model(tmp_path, make_classifier_file, capsys):
    folder = tmp_path / "store"
    only = make_classifier_file(tmp_path / "only.safetensors", seed=1)
    assert _models(folder, "promote", str(only)) == 0
    capsys.readouterr()
    assert _models(folder, "rollback") == 1  # nothing earlier
    assert "no earlier model" in capsys.readouterr().err

    other = make_classifier_file(tmp_path / "other.safetensors", seed=2)
    assert _models(folder, "promote", str(other)) == 0
    (folder / "only.safetensors").write_bytes(b"not a model any more")  # the kept file was damaged
    capsys.readouterr()
    assert _models(folder, "rollback", "only") == 1
    assert (folder / store.ACTIVE_NAME).read_bytes() == other.read_bytes()
    with pytest.raises(ModelError):
        store.rollback(folder)  # its hash no longer matches the history: not offered either
    assert (folder / store.ACTIVE_NAME).read_bytes() == other.read_bytes()
    assert [e["name"] for e in store.history(folder)] == ["only", "other"]
