import subprocess
import sys

import pytest

from afmwatch.config import ConfigError, config_from_dict, load_config


def test_defaults_validate():
    config = config_from_dict({})
    assert config.settle.settle_seconds > 0 and "Z-Axis" in config.reading.channels


def test_unknown_key_wrong_type_and_missing_folder_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("reading:\n  chanels: [Height]\nworkers:\n  batch_size: lots\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert str(path) in text
    assert "reading.chanels: unknown key" in text
    assert "workers.batch_size: expected an integer" in text
    path.write_text(f"watch_folder: {tmp_path / 'nowhere'}\n")
    with pytest.raises(ConfigError, match="watch_folder: folder .*nowhere does not exist"):
        load_config(path)


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text("watch_folder: inbox\n")
    assert load_config(path).watch_folder == tmp_path / "inbox"


def test_check_config_command(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("device: cpu\n")
    done = subprocess.run([sys.executable, "-m", "afmwatch", "check-config", str(good)], capture_output=True, text=True)
    assert done.returncode == 0 and "device: cpu" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: tpu\n")
    done = subprocess.run([sys.executable, "-m", "afmwatch", "check-config", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1 and "device: expected one of" in done.stderr
