"""What a new user runs into first: check-config as strict as run, clean errors for a wrong --out, a rule's
wrong field named, no traceback into a closed pipe, folders accepted by denoise."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from afmwatch.config import ConfigError, load_config


def afmwatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "afmwatch", *args], capture_output=True, text=True, cwd=cwd)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_check_config_refuses_what_run_refuses_and_creates_nothing(tmp_path):
    (tmp_path / "inbox").mkdir()
    inside = write(tmp_path / "inside.yaml", "watch_folder: inbox\noutput_root: inbox/sorted\ndevice: cpu\n")
    done = afmwatch("check-config", "--no-model", str(inside))
    assert done.returncode == 1
    assert "output_root:" in done.stderr and "inside the watch folder" in done.stderr
    assert "run would not start" in done.stderr
    fresh = write(tmp_path / "fresh.yaml", "watch_folder: inbox\noutput_root: out/sorted\ndevice: cpu\n")
    done = afmwatch("check-config", "--no-model", str(fresh))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "out").exists()  # a check, not a start: run creates the folders


def test_check_config_loads_the_models_with_paths_relative_to_the_config(tmp_path, make_classifier_file):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "models").mkdir()
    make_classifier_file(tmp_path / "models" / "m.safetensors", arch="compact")
    base = "watch_folder: inbox\noutput_root: out\ndevice: cpu\nmodel: models/m.safetensors\n"
    good = write(tmp_path / "good.yaml", base)
    done = afmwatch("check-config", str(good), cwd=Path("/"))  # relative to the file, not to the shell
    assert done.returncode == 0, done.stderr
    missing = write(tmp_path / "missing.yaml", base + "denoise:\n  enabled: true\n  model: models/none.safetensors\n")
    done = afmwatch("check-config", str(missing))
    assert done.returncode == 1 and "denoise.model: file" in done.stderr and "does not exist" in done.stderr
    (tmp_path / "models" / "junk.safetensors").write_bytes(b"not a model")
    junk = write(tmp_path / "junk.yaml", base + "denoise:\n  enabled: true\n  model: models/junk.safetensors\n")
    done = afmwatch("check-config", str(junk))
    assert done.returncode == 1 and "denoise.model:" in done.stderr and "junk.safetensors" in done.stderr
    broken_model = write(tmp_path / "broken.yaml", base.replace("m.safetensors", "junk.safetensors"))
    done = afmwatch("check-config", str(broken_model))
    assert done.returncode == 1 and "model:" in done.stderr and "junk.safetensors" in done.stderr


def test_a_rule_with_a_wrong_op_or_decision_names_the_field(tmp_path):
    path = write(
        tmp_path / "rules.yaml",
        "rules:\n  - metric: scar_fraction\n    op: '=>'\n    threshold: 0.1\n    decision: terrible\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "rules[0].op: expected one of '<', '<=', '>', '>='" in text
    assert "rules[0].decision: expected one of 'bad', 'review', got 'terrible'" in text


@pytest.mark.parametrize(
    "command",
    [
        ["synth", "classify", "--n", "2", "--out", "{file}"],
        ["denoise", "--out", "{file}", "{samples}"],
        ["train", "--data", "{tmp}", "--out", "{tmp}"],
    ],
)
def test_a_wrong_out_is_a_usage_error_not_a_traceback(tmp_path, samples, command):
    afile = write(tmp_path / "afile", "x")
    args = [a.format(file=afile, tmp=tmp_path, samples=samples / "nid" / "image.nid") for a in command]
    done = afmwatch(*args)
    assert done.returncode == 2
    assert "argument --out:" in done.stderr and "Traceback" not in done.stderr
    assert afile.read_text() == "x"


def test_output_into_a_closed_pipe_ends_quietly(samples):
    # `afmwatch inspect FOLDER | head -1` once head has gone: the first write fails with EPIPE
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        writer = subprocess.run(
            [sys.executable, "-m", "afmwatch", "inspect", str(samples / "nid")],
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in writer.stderr.decode() and "BrokenPipe" not in writer.stderr.decode()
    assert writer.returncode == 141


def test_denoise_takes_a_folder(tmp_path, samples):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("nid/image.nid", "nid/grid1.nid"):
        shutil.copy(samples / name, folder / Path(name).name)
    done = afmwatch("denoise", "--out", str(tmp_path / "out"), "--formats", "tiff", str(folder))
    assert done.returncode == 0, done.stderr
    written = sorted(p.name.split(".nid.")[0] for p in (tmp_path / "out").glob("*.tiff"))
    assert written == ["grid1", "image"]
