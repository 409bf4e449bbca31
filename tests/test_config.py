import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from afmwatch.cli import main
from afmwatch.config import ConfigError, config_from_dict, config_schema_text, load_config

REPO = Path(__file__).resolve().parents[1]


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


def test_the_committed_json_schema_is_the_generated_one_and_the_example_validates(capsys):
    committed = resources.files("afmwatch").joinpath("config.schema.json").read_text(encoding="utf-8")
    assert committed == config_schema_text(), "regenerate: afmwatch check-config --schema > afmwatch/config.schema.json"
    assert main(["check-config", "--schema"]) == 0
    assert capsys.readouterr().out == committed
    schema = json.loads(committed)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    example = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    assert example.startswith("# yaml-language-server: $schema=afmwatch/config.schema.json\n")
    assert [e.message for e in validator.iter_errors(yaml.safe_load(example))] == []
    # what an editor flags: an unknown key, a value under its limit, an operator that does not exist
    wrong = {"reading": {"chanels": ["Height"]}, "workers": {"batch_size": 0}, "rules": [{"metric": "sq", "op": "=>"}]}
    assert len(list(validator.iter_errors(wrong))) == 3


def test_out_of_range_values_and_checks_across_fields_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"settle": {"settle_seconds": -1}, "watch_folder": "nowhere"}, base=tmp_path)
    assert caught.value.errors == [
        f"watch_folder: folder {tmp_path / 'nowhere'} does not exist",
        "settle.settle_seconds: expected at least 0.0, got -1.0",
    ]
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"workers": {"act_workers": "two"}, "metrics_port": 70000, "rules": [{"metric": "sq"}]})
    assert caught.value.errors == [
        "metrics_port: expected a TCP port (1-65535), got 70000",
        "workers.act_workers: expected an integer, got 'two'",
        "rules[0].threshold: required key is missing",
    ]
