"""The benchmarks' `--quick` smoke modes, run once through `benchmarks.run_all --quick` (the full
benchmarks are not part of CI): every script finishes, its numbers are sane and its section lands
in the Markdown file without disturbing anything else there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("machine", "forward", "readers", "read", "naive", "e2e", "latency", "memory", "profile")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # the fixture runs all scripts


@pytest.fixture(scope="module")
def quick(tmp_path_factory, samples) -> tuple[Path, dict[str, dict]]:
    folder = tmp_path_factory.mktemp("bench")
    markdown = folder / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\nKept by hand.\n\n## Denoising\n\nwritten by denoise_quality.py\n")
    results = folder / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run_all",
            "--quick",
            "--skip",
            "denoise,denoise-real",  # long; each writes its own "## Denoising ..." section
            "--results",
            str(results),
            "--markdown",
            str(markdown),
            "--cache",
            str(folder / "cache"),
        ],
        cwd=REPO,
        env={**os.environ, "AFMWATCH_SAMPLES": str(samples)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return markdown, {name: json.loads((results / f"{name}.json").read_text()) for name in SCRIPTS}


def test_every_section_is_written_and_the_rest_of_the_file_kept(quick):
    markdown, _ = quick
    text = markdown.read_text()
    for name in ("summary", *SCRIPTS):
        begin, end = text.index(f"<!-- bench:{name} -->"), text.index(f"<!-- /bench:{name} -->")
        assert "\n## " in text[begin:end], f"section {name} has no heading"
    assert "Kept by hand." in text
    assert text.rstrip().endswith("## Denoising\n\nwritten by denoise_quality.py")  # stays last, untouched
    assert text.count("Quick smoke run") == len(SCRIPTS) + 1
    assert "daemon ≥ 0.85 × end-to-end limit" in text and "memory growth after warm-up" in text


def test_forward_limit_times_every_registry_network(quick):
    from afmwatch.networks.architectures import ARCHITECTURES

    rows = quick[1]["forward"]["rows"]
    assert set(ARCHITECTURES) <= {r["network"] for r in rows}
    assert all(r["images_per_s"] > 0 for r in rows)
    assert {r["batch"] for r in rows} == {1, 2}


def test_forward_limit_times_chosen_networks_at_each_input_size(tmp_path, capsys):
    """What a larger input costs (the default's network went from 256 to 384 px): each named network at
    each size, in rows of their own."""
    from benchmarks.forward_limit import main

    results = tmp_path / "forward.json"
    argv = ["--quick", "--image-sizes", "32,48", "--networks", "compact", "--batch-sizes", "1"]
    assert main([*argv, "--markdown", str(tmp_path / "B.md"), "--json", str(results)]) == 0
    rows = [r for r in json.loads(results.read_text())["rows"] if not r["network"].startswith("shipped")]
    assert sorted((r["network"], r["input"][1]) for r in rows) == [("compact", 32), ("compact", 48)]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "1×32×32" in (tmp_path / "B.md").read_text() and "1×48×48" in (tmp_path / "B.md").read_text()
    with pytest.raises(SystemExit):  # a misspelt network is refused, not silently left out
        main(["--quick", "--networks", "compcat", "--markdown", str(tmp_path / "B.md")])
    assert "no network named compcat" in capsys.readouterr().err


def test_read_limit_and_naive_loop_rates(quick):
    results = quick[1]
    (read,) = [r for r in results["read"]["rows"] if r["model"] == "convnet"]
    assert read["threads"] > 0 and read["processes"] > 0 and read["limit"] == max(read["threads"], read["processes"])
    assert all(r["files_per_s"] > 0 for r in results["naive"]["rows"])


def test_daemon_end_to_end_sorts_every_file_and_compares_with_its_limits(quick):
    e2e = quick[1]["e2e"]
    for row in e2e["rows"]:
        daemon = row["daemon"]
        assert daemon["files"] == e2e["files"] == sum(daemon["decisions"].values())
        assert "failed" not in daemon["decisions"]
        assert daemon["files_per_s"] > 0 and daemon["settle_wait_s"] >= 0 and daemon["wall_s"] > daemon["processing_s"]
        assert row["e2e_limit"] == min(row["read_limit"], row["forward_limit"]) > 0
        assert row["ratio_limit"] == pytest.approx(daemon["files_per_s"] / row["e2e_limit"])
        assert {"read", "preprocess", "inference", "act"} <= set(daemon["stage_ms"])


def test_latency_percentiles(quick):
    latency = quick[1]["latency"]
    for row in latency["rows"]:
        assert row["files"] == 10
        assert 0 < row["p50_s"] <= row["p95_s"] <= row["max_s"]
        assert row["max_s"] >= latency["settle_seconds"]  # no sidecar before the settle wait


def test_memory_samples_after_every_burst(quick):
    memory = quick[1]["memory"]
    (row,) = memory["rows"]
    assert [n for n, _ in row["points"]] == [0, 8, 16, 24]
    assert all(rss > 10 for _, rss in row["points"])
    assert row["growth_after_warmup_mb"] == pytest.approx(row["rss_end_mb"] - row["rss_after_warmup_mb"])


def test_readers_time_every_sample_format_and_report_refusals(quick):
    rows = quick[1]["readers"]["rows"]
    formats = {r["format"] for r in rows if "files_per_s" in r}
    assert {"nid", "ibw", "jpk", "h5-jpk", "spm", "gwy", "stp", "top", "png", "tiff"} <= formats
    assert all(r["files_per_s"] > 0 and r["mb_per_s"] > 0 for r in rows if "files_per_s" in r)
    (thermal,) = [r for r in rows if r["file"] == "thermal.nid"]
    assert thermal["error"]  # a valid file with no image: refused, with the reason


def test_profile_names_the_stages_of_every_thread(quick):
    groups = quick[1]["profile"]["groups"]
    assert {"afmwatch-infer", "afmwatch-read (all)", "afmwatch-settle"} <= set(groups)
    assert {"afmwatch-act", "afmwatch-act (all)"} & set(groups)  # one act thread, or a pool of them
    assert "inference" in groups["afmwatch-infer"]["stages"]
    assert {"read", "preprocess"} <= set(groups["afmwatch-read (all)"]["stages"])
    assert all(info["busy_s"] >= 0 for info in groups.values())
    cpu = quick[1]["profile"]["cpu"]["groups"]  # the unprofiled run: the kernel's CPU time per thread
    assert cpu["reader processes (all)"] > 0 and cpu["afmwatch-infer"] > 0
