"""The service around the pipeline: start-up checks, systemd notify, hot model reload, SIGHUP, copy mode."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from daemon_support import (
    REPO,
    Daemon,
    processed_count,
    scan_bytes_file,
    sha256,
    sorted_files,
    tiny_model,
    wait_until,
    write_config,
)

from afmwatch.config import ConfigError, config_from_dict, load_config
from afmwatch.daemon.notify import Notifier
from afmwatch.daemon.service import startup_errors
from afmwatch.daemon.sidecar import preview_path, sidecar_path, validate


def _config(tmp_path: Path, **settings):
    data = {"watch_folder": str(tmp_path / "inbox"), "output_root": str(tmp_path / "out"), **settings}
    return config_from_dict(data)


def test_startup_refuses_bad_folders_with_a_clear_message(tmp_path):
    (tmp_path / "inbox").mkdir()
    assert startup_errors(_config(tmp_path)) == []
    (error,) = startup_errors(_config(tmp_path, output_root=str(tmp_path / "inbox" / "sorted")))
    assert error.startswith("output_root:") and "inside the watch folder" in error
    (tmp_path / "file").write_text("x")
    (error,) = startup_errors(_config(tmp_path, output_root=str(tmp_path / "file" / "out")))
    assert error.startswith("output_root: cannot write in")
    (error,) = startup_errors(config_from_dict({"output_root": str(tmp_path / "out")}))
    assert error.startswith("watch_folder: required")
    (error,) = startup_errors(_config(tmp_path, state_folder=str(tmp_path / "inbox" / "state")))
    assert error.startswith("state_folder:") and "inside the watch folder" in error


def test_run_refuses_an_invalid_config_with_exit_78(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"watch_folder": str(tmp_path / "nowhere"), "sort": "shuffle"}))
    done = subprocess.run(
        [sys.executable, "-m", "afmwatch", "run", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 78
    assert "sort: expected one of" in done.stderr and str(config) in done.stderr
    config.write_text(yaml.safe_dump({"watch_folder": str(tmp_path / "nowhere")}))
    with pytest.raises(ConfigError, match="watch_folder: folder .*nowhere does not exist"):
        load_config(config)


def _receiver(address: str) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + address[1:] if address.startswith("@") else address)
    receiver.settimeout(60)
    return receiver


def test_notify_messages_reach_an_abstract_socket():
    address = f"@afmwatch-test-{os.getpid()}"
    with _receiver(address) as receiver:
        notifier = Notifier(address, watchdog_usec=2_000_000)
        notifier.ready("3 scans sorted")
        assert receiver.recv(4096).decode().split("\n")[:2] == ["READY=1", "STATUS=3 scans sorted"]
        notifier.watchdog()
        notifier.watchdog()  # rate-limited: one ping per half interval
        notifier.stopping("draining")
        assert receiver.recv(4096) == b"WATCHDOG=1"
        assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=draining"
    assert not Notifier(None).send("READY=1")  # not under systemd: nothing to do


@pytest.mark.slow
def test_daemon_speaks_the_notify_protocol(tmp_path, model):
    config = write_config(tmp_path, model)
    path = tmp_path / "notify.sock"
    with _receiver(str(path)) as receiver:
        daemon = Daemon(config, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        messages: list[str] = []

        def until(key: str) -> str:
            while True:
                message = receiver.recv(4096).decode()
                messages.append(message)
                if key in message.split("\n"):
                    return message

        ready = until("READY=1")
        assert "STATUS=0 scans sorted" in ready and f"MAINPID={daemon.process.pid}" in ready
        until("WATCHDOG=1")
        until("WATCHDOG=1")  # pinged again and again from the worker loop
        daemon.process.send_signal(signal.SIGHUP)
        until("RELOADING=1")
        until("READY=1")
        daemon.process.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert daemon.process.wait(60) == 0


def _install_active(model_folder: Path, source: Path) -> None:
    """Put a file in place as the active model bypassing `promote` (a botched manual copy)."""
    temporary = model_folder / ".active.tmp"
    temporary.write_bytes(source.read_bytes())
    os.replace(temporary, model_folder / "active.safetensors")


@pytest.mark.slow
def test_promoted_model_is_picked_up_broken_one_refused_and_sighup_reloads(tmp_path):
    import torch

    from afmwatch.networks.model_file import ModelError, load_model_file, save_model_file
    from afmwatch.networks.store import promote

    models, model_folder = tmp_path / "models", tmp_path / "store"
    promote(tiny_model(models / "a.safetensors", name="tiny-a"), model_folder)
    config = write_config(tmp_path, None, model_folder=str(model_folder))
    inbox, out = tmp_path / "inbox", tmp_path / "out"

    def model_of_next_scan(n: int) -> dict:
        scan_bytes_file(tmp_path / f".s{n}", 300 + n).replace(inbox / f"s{n}.tif")
        wait_until(lambda: processed_count(out) >= n, what=f"scan {n} sorted")
        (path,) = [p for p in sorted_files(out) if p.name == f"s{n}.tif"]
        return json.loads(sidecar_path(path).read_text())

    daemon = Daemon(config).wait_ready()
    try:
        assert model_of_next_scan(1)["model"]["name"] == "tiny-a"
        promote(tiny_model(models / "b.safetensors", name="tiny-b", seed=1), model_folder)
        wait_until(lambda: daemon.events("model_reloaded"), what="model_reloaded")
        assert model_of_next_scan(2)["model"]["name"] == "tiny-b"

        # a model that loads but gives NaN: promote refuses it, and so does the daemon if it appears anyway
        tensors, meta = load_model_file(models / "b.safetensors")
        save_model_file(
            models / "nan.safetensors",
            {k: torch.full_like(v, float("nan")) for k, v in tensors.items()},
            dict(meta, name="tiny-nan"),
        )
        with pytest.raises(ModelError):
            promote(models / "nan.safetensors", model_folder)
        _install_active(model_folder, models / "nan.safetensors")
        wait_until(lambda: daemon.events("model_refused"), what="model_refused")
        (models / "garbage.safetensors").write_bytes(os.urandom(4000))
        _install_active(model_folder, models / "garbage.safetensors")
        wait_until(lambda: len(daemon.events("model_refused")) >= 2, what="second model_refused")
        sidecar = model_of_next_scan(3)
        assert sidecar["model"]["name"] == "tiny-b" and sidecar["decision"] != "failed"

        # SIGHUP: a valid change applies; an invalid file is refused and the daemon keeps going
        data = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**data, "previews": False}))
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.events("config_reloaded"), what="config_reloaded")
        sidecar = model_of_next_scan(4)
        assert sidecar["preview"] is None and not preview_path(Path(sidecar["final_path"])).exists()
        config.write_text(yaml.safe_dump({**data, "sort": "shuffle"}))
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.events("config_reload_refused"), what="config_reload_refused")
        assert model_of_next_scan(5)["sort"] == "move"
    finally:
        assert daemon.terminate() == 0
    refused = daemon.events("model_refused")
    assert all(event["keeps"] == "tiny-b" for event in refused)


@pytest.mark.slow
def test_copy_mode_duplicates_and_restart_do_not_process_twice(tmp_path, model):
    config = write_config(tmp_path, model, sort="copy", duplicates="skip")
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    first = scan_bytes_file(inbox / "first.tif", 11)
    daemon = Daemon(config).wait_ready()
    try:
        wait_until(lambda: processed_count(out) >= 1, what="first scan sorted")
        (inbox / "sub").mkdir()
        (inbox / "sub" / "again.tif").write_bytes(first.read_bytes())  # re-exported, same content
        wait_until(lambda: processed_count(out) >= 2, what="duplicate recorded")
    finally:
        assert daemon.terminate() == 0
    files = sorted_files(out)
    assert len(files) == 2 and all(sha256(f) == sha256(first) for f in files)
    assert (inbox / "first.tif").exists() and (inbox / "sub" / "again.tif").exists()  # copy keeps originals
    again = json.loads(sidecar_path(next(f for f in files if f.name == "again.tif")).read_text())
    validate(again)
    original = next(f for f in files if f.name == "first.tif")
    assert again["duplicate_of"] == str(original) and again["decision"] == original.parent.name
    restarted = Daemon(config).wait_ready()
    time.sleep(2.0)
    assert restarted.terminate() == 0
    assert not restarted.events("scan_sorted") and len(sorted_files(out)) == 2
    status = subprocess.run(
        [sys.executable, "-m", "afmwatch", "status", "--config", str(config), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["states"] == {"done": 2} and report["model"]["name"] == "tiny-test" and not report["running"]
    text = subprocess.run(
        [sys.executable, "-m", "afmwatch", "status", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "afmwatch: not running" in text and "tiny-test" in text and "states     done 2" in text


def test_config_example_lists_every_setting_and_validates(tmp_path):
    import dataclasses

    from afmwatch.config import Config

    data = yaml.safe_load((REPO / "config.example.yaml").read_text())

    def missing(cls, section: dict, prefix: str = "") -> list[str]:
        gaps = []
        for f in dataclasses.fields(cls):
            if f.name not in section:
                gaps.append(prefix + f.name)
            elif dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                gaps += missing(f.default_factory, section[f.name], f"{prefix}{f.name}.")
        return gaps

    assert missing(Config, data) == []
    for key in ("watch_folder", "output_root", "state_folder", "model_folder"):
        (tmp_path / key).mkdir()
        data[key] = str(tmp_path / key)
    config = config_from_dict(data)
    assert config == dataclasses.replace(
        Config(), **{k: tmp_path / k for k in ("watch_folder", "output_root", "state_folder", "model_folder")}
    )
    with pytest.raises(ConfigError, match="workers.batch_size: expected at least 1"):
        config_from_dict({"workers": {"batch_size": 0}})


@pytest.mark.slow
def test_sort_none_writes_sidecar_and_preview_beside_the_untouched_scan(tmp_path, model):
    config = write_config(tmp_path, model, sort="none")
    inbox = tmp_path / "inbox"
    (inbox / "day1").mkdir()
    scan = scan_bytes_file(inbox / "day1" / "stays.tif", 41)
    digest = sha256(scan)
    daemon = Daemon(config).wait_ready()
    try:
        wait_until(lambda: sidecar_path(scan).exists(), what="sidecar beside the scan")
        time.sleep(1.0)  # its own sidecar and preview must not be picked up as scans
    finally:
        assert daemon.terminate() == 0
    sidecar = json.loads(sidecar_path(scan).read_text())
    validate(sidecar)
    assert sidecar["final_path"] == sidecar["original_path"] == str(scan) and sha256(scan) == digest
    assert preview_path(scan).exists() and len(daemon.events("scan_sorted")) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tif"))


def test_cpu_inference_threads_leave_the_reader_threads_their_cores(monkeypatch):
    import torch

    from afmwatch.config import WorkersConfig
    from afmwatch.daemon import service

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(service, "available_cores", lambda: 2)
        assert service.set_torch_threads(WorkersConfig(read_workers=2)) == 1 == torch.get_num_threads()
        monkeypatch.setattr(service, "available_cores", lambda: 16)
        assert service.set_torch_threads(WorkersConfig(read_workers=4)) == 12 == torch.get_num_threads()
        assert service.set_torch_threads(WorkersConfig(read_workers=4, torch_threads=3)) == 3
    finally:
        torch.set_num_threads(before)


def test_torch_threads_below_one_is_refused():
    with pytest.raises(ConfigError, match="torch_threads"):
        config_from_dict({"workers": {"torch_threads": 0}})


def test_a_duplicate_of_a_scan_whose_sidecar_copy_was_dropped_is_sorted_beside_it(tmp_path, model):
    config = write_config(tmp_path, model, journal_sidecar_days=0)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    content = scan_bytes_file(inbox / "first.tif", 21).read_bytes()
    daemon = Daemon(config).wait_ready()
    try:
        wait_until(lambda: processed_count(out) >= 1, what="first scan sorted")
    finally:
        assert daemon.terminate() == 0
    restarted = Daemon(config).wait_ready()  # compacts at start: every finished copy is older than 0 days
    try:
        assert restarted.events("journal_compacted")[0]["sidecar_copies_dropped"] == 1
        (inbox / "again.tif").write_bytes(content)
        wait_until(lambda: processed_count(out) >= 2, what="duplicate sorted")
    finally:
        assert restarted.terminate() == 0
    (original,) = [f for f in sorted_files(out) if f.name == "first.tif"]
    (again,) = [f for f in sorted_files(out) if f.name == "again.tif"]
    sidecar = json.loads(sidecar_path(again).read_text())
    validate(sidecar)
    assert sidecar["duplicate_of"] == str(original) and again.parent == original.parent
    assert sidecar["decision"] == original.parent.name


def test_sigusr1_writes_every_threads_stack_to_the_log_and_the_daemon_keeps_going(tmp_path, model):
    config = write_config(tmp_path, model)
    daemon = Daemon(config).wait_ready()
    try:
        daemon.process.send_signal(signal.SIGUSR1)
        wait_until(lambda: "afmwatch/daemon/settle.py" in daemon.log(), what="thread stacks in the log")
        assert daemon.log().count("Thread 0x") >= 4 and daemon.process.poll() is None
        scan_bytes_file(tmp_path / "inbox" / "after.tif", 5)
        wait_until(lambda: processed_count(tmp_path / "out") >= 1, what="a scan sorted after the dump")
    finally:
        assert daemon.terminate() == 0
