"""Two versions of afmwatch on the same scans: their sidecars compared field by field, and their speed.

Issue 15 (the restructuring) is done when "the sidecars of the same 40 scans are identical before and
after apart from times and the decision changes the real-scans issue makes, and BENCHMARKS.md shows no
slowdown". This script checks exactly that, reproducibly:

- each version (`--before REV`, `--after REV`) is checked out into its own git worktree and run with its
  own code (`PYTHONPATH=WORKTREE python -m afmwatch ...`, this interpreter and its packages);
- the scans: every file of the real samples (`--samples`, default `../shared/afm-samples`, the
  not-an-image thermal.nid included) and the good/ and bad/ scans of
  `afmwatch synth classify --n 24 --seed 4242 --no-gwy --no-previews`, generated once by the *before*
  code so both versions see the same bytes;
- one model file for both (`--model`, default the before revision's shipped
  `models/default-classifier.safetensors`) and one config (device cpu, settle 0.3 s);
- a real `afmwatch run` per version sorts a copy of the scans, and is stopped with SIGTERM once every
  scan has its sidecar;
- the sidecars are compared file by file: times and the temporary folders' paths are left out, every
  other difference is listed and classified as a change the real-scans issue (12) or the other merged
  issues made by design, or as unexplained;
- speed: `--speed-files` (500) synthetic 256x256 scans through a real `afmwatch run` of each version,
  alternating before/after `--rounds` times so the shared machine's load hits both alike; files/s from
  the first scan settling to the last sidecar written (as benchmarks/daemon_e2e.py measures it).

    python -m benchmarks.compare_versions --before 59c2719 --after HEAD [--markdown BENCHMARKS.md]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO, fmt, parser, report, table, work_folder

SIDECAR_SUFFIX = ".afmwatch.json"
DEFAULT_SAMPLES = Path(os.environ.get("AFMWATCH_SAMPLES", REPO.parent / "shared" / "afm-samples"))
MODEL_IN_REPO = "models/default-classifier.safetensors"
SYNTH_N, SYNTH_SEED = 24, 4242
SETTLE_SECONDS = 0.3
READY_TIMEOUT_S = 300.0


# -- the versions -------------------------------------------------------------------------------------
def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def checkout(rev: str, folder: Path) -> Path:
    """A detached worktree of `rev` in `folder` (removed by `remove_checkout`)."""
    git("worktree", "add", "--detach", str(folder), rev)
    return folder


def remove_checkout(folder: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True)


def code_env(code: Path, threads: int | None = None) -> dict[str, str]:
    """The environment that runs `code`'s afmwatch with this interpreter's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["PYTHONPATH"] = str(code)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def afmwatch(code: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "afmwatch", *args], cwd=code, env=code_env(code), check=True, capture_output=True
    )


# -- the scans ----------------------------------------------------------------------------------------
def synthetic_set(code: Path, out: Path, n: int, seed: int, *extra: str) -> list[Path]:
    """The good/ and bad/ scans of `afmwatch synth classify` run by `code`."""
    if not (out / "manifest.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        afmwatch(code, "synth", "classify", "--out", str(out), "--n", str(n), "--seed", str(seed), *extra)
    return sorted(p for sub in ("good", "bad") for p in (out / sub).iterdir() if p.is_file())


def real_samples(folder: Path) -> list[Path]:
    """Every file of the real samples but their MANIFEST.md."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST.md")


# -- one daemon run -----------------------------------------------------------------------------------
class Daemon:
    """`afmwatch run` of `code` in `folder` (inbox/, out/, state/, config.yaml, daemon.log), ready when
    it says READY=1 on its notify socket (the systemd protocol, the same in every version)."""

    def __init__(self, code: Path, folder: Path, model: Path, settle: float, device: str):
        self.code, self.folder = code, folder
        self.inbox, self.out = folder / "inbox", folder / "out"
        self.inbox.mkdir(parents=True)
        config = {
            "watch_folder": str(self.inbox),
            "output_root": str(self.out),
            "state_folder": str(folder / "state"),
            "model": str(model),
            "device": device,
            "settle": {"settle_seconds": settle},
        }
        self.config = folder / "config.yaml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = folder / "daemon.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Daemon:
        notify_path = self.folder / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        sock.settimeout(0.5)
        env = {**code_env(self.code), "NOTIFY_SOCKET": str(notify_path)}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "afmwatch", "run", "--config", str(self.config)],
                cwd=self.code,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                try:
                    if b"READY=1" in sock.recv(4096):
                        return self
                except TimeoutError:
                    pass
                if self.process.poll() is not None:
                    raise RuntimeError(f"afmwatch run exited with {self.process.returncode}:\n{self.log.read_text()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"afmwatch run not ready after {READY_TIMEOUT_S:.0f} s")
        finally:
            sock.close()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM (the daemon drains and exits 0); its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def sidecars(self) -> list[Path]:
        found = []
        for folder, _, names in os.walk(self.out):
            found += [Path(folder) / n for n in names if n.endswith(SIDECAR_SUFFIX) and not n.startswith(".")]
        return found

    def sort(self, staged: Path, timeout: float) -> tuple[list[Path], float]:
        """Rename every file of `staged` into the inbox at once and wait until each has its sidecar;
        (the sidecars, when the drop began)."""
        names = sorted(os.listdir(staged))
        began = time.time()
        for name in names:
            os.replace(staged / name, self.inbox / name)
        deadline = time.monotonic() + timeout
        while len(found := self.sidecars()) < len(names):
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"afmwatch run exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(found)} of {len(names)} scans sorted after {timeout:.0f} s; see {self.log}")
            time.sleep(0.1)
        return found, began


def stage(files: list[Path], folder: Path) -> Path:
    """Flat copies of `files` in `folder` (same file system as the inbox, so the drop is renames)."""
    folder.mkdir(parents=True)
    for path in files:
        if (folder / path.name).exists():
            raise SystemExit(f"two scans named {path.name}: the comparison needs unique names")
        shutil.copyfile(path, folder / path.name)
    return folder


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_version(code: Path, files: list[Path], folder: Path, model: Path, args: Any) -> list[Path]:
    """The sidecars `code`'s daemon writes for `files`."""
    staged = stage(files, folder / "staged")
    with Daemon(code, folder, model, args.settle, args.device) as daemon:
        sidecars, _ = daemon.sort(staged, timeout=600)
    return sidecars


def rate(code: Path, files: list[Path], folder: Path, model: Path, args: Any) -> dict[str, Any]:
    """files/s of `code`'s daemon from the first scan settling to the last sidecar written."""
    staged = stage(files, folder / "staged")
    load = os.getloadavg()[0]
    with Daemon(code, folder, model, args.settle, args.device) as daemon:
        paths, began = daemon.sort(staged, timeout=1800)
    sidecars = [load_json(path) for path in paths]
    settled = [epoch(s["settled_at"]) for s in sidecars if s.get("settled_at")]
    stages: dict[str, list[float]] = {}
    for sidecar in sidecars:
        for name, ms in (sidecar.get("timings_ms") or {}).items():
            if ms is not None:
                stages.setdefault(name, []).append(ms)
    last = max(p.stat().st_mtime for p in paths)
    result = {
        "files": len(paths),
        "files_per_s": len(paths) / (last - min(settled)),
        "wall_s": last - began,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "stage_ms": {name: statistics.mean(values) for name, values in stages.items()},
    }
    shutil.rmtree(folder, ignore_errors=True)
    return result


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# -- comparing sidecars -------------------------------------------------------------------------------
# Left out of the comparison: when things happened and how long they took.
TIME_FIELD = re.compile(r"(_at$|^timings_ms(\.|$))")
SEVERITY = {"good": 0, "review": 1, "bad": 2}
# A float32 number's last digits: P(bad) of the same scan differs by one unit in the last place with the
# batch it shared (the CPU kernels sum in another order for another batch size), in both versions alike.
FLOAT32_NOISE = 2e-7
# Metrics now computed in float64 from the float32 heights (issue 12, commit 07dd061) differ from the old
# float32 sums in their 7th significant digit.
FLOAT64_METRICS = 1e-5
# The metrics issue 12 added (tip changes, stopped scans).
NEW_METRICS = {
    "lines_missing",
    "tip_change_score",
    "tip_change_lines",
    "tip_change_start",
    "tip_change_end",
    "tip_change_sharpness",
    "sharpness_change",
    "sharpness_change_line",
    "line_break",
    "line_break_band",
}
ABSENT = "<absent>"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"quality.sa": 1.2, "frames[0].decision": "good", ...}; lists of plain values stay whole."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def relative(a: Any, b: Any) -> float:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or isinstance(a, bool):
        return float("inf")
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def decision_change(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Why the decision changed, by issue 12's rules (rules_may_soften false), or None if nothing explains it."""
    old, new = before.get("decision"), after.get("decision")
    network = after.get("network_decision")
    rule, new_rule = before.get("rule") or {}, after.get("rule") or {}
    if (
        rule.get("decision") in SEVERITY
        and network in SEVERITY
        and SEVERITY[rule["decision"]] < SEVERITY[network]
        and old == rule["decision"]
        and new == network == before.get("network_decision")
    ):
        return (
            f"the {rule['decision']} rule {rule['metric']} {rule['op']} {rule['threshold']} may no longer make the "
            f"network's {network} milder (issue 12: rules only make a decision more severe; rules_may_soften false)"
        )
    if new_rule.get("metric") in NEW_METRICS and new == new_rule.get("decision"):
        return f"a rule issue 12 added fired: {new_rule['metric']} {new_rule['op']} {new_rule['threshold']}"
    familiarity = after.get("familiarity") or {}
    if familiarity.get("unfamiliar") and new == "review":
        return "unlike the scans the model was trained on (issue 12's familiarity check)"
    if (
        rule.get("decision") in SEVERITY
        and new_rule.get("metric") == rule.get("metric")
        and SEVERITY[new] > SEVERITY.get(old, -1)
    ):
        return "a rule as severe as the network now decides with it (issue 12)"
    return None


# metrics measured on the levelled heights, which now have the quadratic background removed (not raw
# counts, clipping, tilt or bow, which read the raw heights)
LEVELLED_METRICS = frozenset(
    {"line_artefact_ratio", "scar_fraction", "streak_fraction", "noise_rms", "signal_to_noise"}
    | {"trace_retrace_mismatch", "sq", "sa", "skewness", "z_range"}
    | (NEW_METRICS - {"lines_missing"})  # the tip-change and sharpness metrics
)


def _numbers_out(reasons: list[Any]) -> set[str]:
    """Reasons with their numbers replaced, to compare what they say rather than what they quote."""
    return {re.sub(r"\d+(\.\d+)?", "#", r) for r in reasons if isinstance(r, str)}


def explain(key: str, old: Any, new: Any, before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str]:
    """(class, why) for one field that differs: class 'design' (a change an issue made on purpose),
    'float' (the same number in another precision) or 'unexplained'."""
    name = re.sub(r"\[\d+\]", "[]", key)
    metric = name.removeprefix("quality.")
    changed_decision = before.get("decision") != after.get("decision")
    why_decision = decision_change(before, after) if changed_decision else None
    if name == "schema_version" and (old, new) == (1, 2):
        return "design", "sidecar schema 2 (issue 12)"
    if name == "reasons" and new and all(isinstance(r, str) and r for r in new) and set(old or []) <= set(new):
        return "design", "reasons never empty and in words, the network's own reason too (issue 12)"
    if name == "reasons" and new and _numbers_out(old or []) <= _numbers_out(new):
        return "design", (
            "reasons never empty and in words (issue 12); a rule's reason quotes its metric, measured after "
            "the quadratic background is removed (issue 12, scanner bow)"
        )
    if name == "network_decision" and old is None and new is not None:
        return "design", "what the model said before the rules (issue 12)"
    if name.startswith("model_parts") and old == ABSENT:
        if name == "model_parts.network" and new == after["probabilities"]["bad"]:
            return "design", "each model part's P(bad) (issue 12); the network's equals probabilities.bad"
        if name == "model_parts.network" and after.get("frames"):
            return "unexplained", (
                f"new field, but for a file of {len(after['frames'])} frames it is the first frame's P(bad) "
                f"({new:.4f}), not the file's probabilities.bad ({after['probabilities']['bad']:.4f}, "
                f"{after['multiframe_rule']} over the frames): verdict.decide takes predictions[0].parts"
            )
        if new is None and after.get("decision") == "failed":
            return "design", "model parts (issue 12): none for a file that was not classified"
    if name == "familiarity" and old == ABSENT and new is None:
        return "design", "familiarity check (issue 12): the old model file has none"
    if name.startswith("quality.") and old == ABSENT and metric in NEW_METRICS:
        if metric == "lines_missing" and new != after["quality"]["lines_set"] - after["quality"]["lines_acquired"]:
            return "unexplained", "lines_missing is not lines_set - lines_acquired"
        return "design", "metric added for tip changes and stopped scans (issue 12)"
    if (
        metric in LEVELLED_METRICS
        and name.startswith("quality.")
        and old != ABSENT
        and relative(old, new) >= FLOAT64_METRICS
    ):
        return "design", (
            "measured after tilt and scanner bow (the quadratic background) are removed, not the plane alone "
            "(issue 12: a bow is no fault and no roughness)"
        )
    if (
        metric in LEVELLED_METRICS
        and metric not in ("sa", "sq", "skewness", "z_range")
        and name.startswith("quality.")
        and relative(old, new) < FLOAT64_METRICS
    ):
        return "float", "float32 heights levelled another way (quadratic background, issue 12): rounded differently"
    if (
        name in ("quality.sa", "quality.sq", "quality.skewness", "quality.z_range")
        and relative(old, new) < FLOAT64_METRICS
    ):
        return "float", "surface statistics summed in float64 (issue 12, commit 07dd061)"
    if name == "quality.tilt_deg" and relative(old, new) < FLOAT64_METRICS:
        return "float", "tilt across the lines uses the line spacing from the scan size (issue 12), rounded otherwise"
    if name.endswith("probabilities.good") or (name == "confidence" and after.get("label") == "good"):
        p_bad = after["probabilities"]["bad"] if not name.startswith("frames") else None
        exact = p_bad is None or abs(new - (1.0 - p_bad)) < 1e-12
        if exact and abs(old - new) <= FLOAT32_NOISE:
            return "float", "P(good) = 1 - P(bad) in float64, not the float32 softmax (issue 12, commit dc436fb)"
    # the same noise in the model parts' P(bad) and in the familiarity score (from the network's features)
    from_network = name.startswith("model_parts.") or name == "familiarity.score"
    if (name.endswith("probabilities.bad") or name == "confidence" or from_network) and (
        isinstance(old, float) and isinstance(new, float) and abs(old - new) <= FLOAT32_NOISE
    ):
        return "float", "float32 last digit: the same scan in another batch (in either version)"
    follows_decision = name in ("decision", "final_path", "preview", "sidecar_path") or name.startswith("rule")
    if follows_decision and changed_decision and why_decision:
        if name == "decision" or name.startswith("rule"):
            return "design", why_decision
        moved = isinstance(old, str) and old.replace(f"/{before['decision']}/", f"/{after['decision']}/") == new
        if moved:
            return "design", "in the folder of the new decision"
    if name == "sidecar_path" and old == ABSENT and new == f"{after['final_path']}{SIDECAR_SUFFIX}":
        return "design", "the sidecar records its own path (issue 14, names of any length)"
    if name == "rule" and old == ABSENT and new is None and changed_decision and why_decision:
        return "design", why_decision
    if after.get("decision") == "failed" and name in ("errors", "settle_attempts"):
        errors_new = after.get("errors") or []
        if name == "settle_attempts" or (len(errors_new) == 1 and errors_new[0] == (old or [None])[0]):
            return "design", "a file that can never be read fails at its first attempt, not after five (issue 14)"
    if name == "review" or name.startswith("review.") or name.startswith("denoised."):
        return "design", "review page corrections (issue 13) / the denoise guard (issue 16)"
    return "unexplained", ""


def compare(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every difference between two sets of sidecars (keyed by scan name), times left out."""
    diffs = []
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            diffs.append(
                {
                    "scan": name,
                    "field": "(sidecar)",
                    "before": name in before,
                    "after": name in after,
                    "class": "unexplained",
                    "why": "sidecar written by one version only",
                }
            )
            continue
        flat_before, flat_after = flatten(before[name]), flatten(after[name])
        for key in sorted(set(flat_before) | set(flat_after)):
            if TIME_FIELD.search(key):
                continue
            old, new = flat_before.get(key, ABSENT), flat_after.get(key, ABSENT)
            if old == new:
                continue
            kind, why = explain(key, old, new, before[name], after[name])
            diffs.append({"scan": name, "field": key, "before": old, "after": new, "class": kind, "why": why})
    return diffs


def read_sidecars(paths: list[Path], root: Path) -> dict[str, dict[str, Any]]:
    """Sidecars by scan name, the run's own folder written as <RUN>."""
    out = {}
    for path in paths:
        text = path.read_text(encoding="utf-8").replace(json.dumps(str(root))[1:-1], "<RUN>")
        out[path.name.removesuffix(SIDECAR_SUFFIX)] = json.loads(text)
    return out


# -- the report ---------------------------------------------------------------------------------------
def short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    # no <tags> in Markdown (a renderer hides them), no | inside a table cell
    text = text.replace(ABSENT, "(absent)").replace("<RUN>", "RUN").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def difference_table(diffs: list[dict[str, Any]]) -> str:
    """One row per (field, class, why): how many scans, one example."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for d in diffs:
        field = re.sub(r"\[\d+\]", "[]", d["field"])
        field = "rule" if field.startswith("rule.") else field  # the deciding rule's fields, as one
        groups.setdefault((d["class"], field, d["why"]), []).append(d)
    order = {"unexplained": 0, "design": 1, "float": 2}
    rows = []
    for (kind, field, why), items in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        example = items[0]
        rows.append(
            [
                {"design": "(a) by design", "float": "(a) precision", "unexplained": "**(b) unexplained**"}[kind],
                f"`{field}`",
                len({d["scan"] for d in items}),
                why or "–",
                f"{example['scan']}: {short(example['before'], 40)} → {short(example['after'], 40)}",
            ]
        )
    return table(["class", "field", "scans", "why", "example (before → after)"], rows)


def speed_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["after"]["files_per_s"] / r["before"]["files_per_s"] for r in rounds]
    return {"ratios": ratios, "min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}


STAGES = ("hash", "read", "quality", "preprocess", "wait", "inference", "act")


def stage_means(rounds: list[dict[str, Any]], side: str) -> dict[str, float]:
    return {
        stage: statistics.mean(r[side]["stage_ms"][stage] for r in rounds if stage in r[side]["stage_ms"])
        for stage in STAGES
        if any(stage in r[side]["stage_ms"] for r in rounds)
    }


def stage_rows(rounds: list[dict[str, Any]]) -> str:
    means = {side: stage_means(rounds, side) for side in ("before", "after")}
    rows = [[side] + [fmt(means[side].get(stage), 1) for stage in STAGES] for side in means]
    grew = sorted(
        ((means["after"][s] - means["before"][s], s) for s in STAGES if s in means["after"] and s in means["before"]),
        reverse=True,
    )
    grown = ", ".join(f"{stage} {delta:+.1f} ms" for delta, stage in grew if delta >= 0.5) or "none"
    return table(["version", *STAGES], rows) + f"\n\nStages that take 0.5 ms or more longer per file after: {grown}."


def markdown(results: dict[str, Any]) -> str:
    before, after = results["before"], results["after"]
    diffs, decisions = results["differences"], results["decisions"]
    classes = Counter(d["class"] for d in diffs)
    changed = [d for d in decisions if d["before"] != d["after"]]
    lines = [
        f"Before `{before['rev']}` ({before['sha'][:7]}), after `{after['rev']}` ({after['sha'][:7]}), each run from "
        f"its own worktree with the same Python packages. The same model file for both: `{results['model']}` "
        f"(sha256 {results['model_sha256'][:12]}…), device cpu, settle {results['settle']} s, every other setting "
        "the daemon's default.",
        "",
        f"**Sidecars.** {results['scans']} scans ({results['real']} real samples, the not-an-image thermal.nid "
        f"included, and {results['synthetic']} synthetic from `afmwatch synth classify --n {SYNTH_N} --seed "
        f"{SYNTH_SEED} --no-gwy --no-previews` run by the before code) sorted by a real `afmwatch run` of each "
        "version, stopped with SIGTERM. Sidecars compared field by field, times (`*_at`, `timings_ms`) and the "
        "run's own folder left out: "
        f"{classes['design']} differences by design, {classes['float']} of precision (the same number in "
        f"its last digits), **{classes['unexplained']} unexplained**.",
        "",
        difference_table(diffs),
        "",
        f"**Decisions.** {len(decisions) - len(changed)} of {len(decisions)} unchanged "
        f"(before {dict(sorted(Counter(d['before'] for d in decisions).items()))}, "
        f"after {dict(sorted(Counter(d['after'] for d in decisions).items()))}).",
    ]
    if changed:
        lines += [
            "",
            table(
                ["scan", "before", "after", "network said", "why"],
                [[d["scan"], d["before"], d["after"], d["network"], d["why"] or "**unexplained**"] for d in changed],
            ),
        ]
    speed = results.get("speed")
    if speed:
        summary = speed["summary"]
        lines += [
            "",
            f"**Speed.** {speed['files']} synthetic {speed['size']}x{speed['size']} scans (before code's generator, "
            f"seed {speed['seed']}) through a real `afmwatch run` of each version, alternating before, after, "
            f"{len(speed['rounds'])} times; files/s from the first scan settling to the last sidecar written.",
            "",
            table(
                [
                    "round",
                    "before files/s",
                    "after files/s",
                    "after / before",
                    "load average at the start (before run, after run)",
                ],
                [
                    [
                        i + 1,
                        fmt(r["before"]["files_per_s"]),
                        fmt(r["after"]["files_per_s"]),
                        fmt(ratio, 2),
                        f"{r['before']['load_before']:.1f}, {r['after']['load_before']:.1f}",
                    ]
                    for i, (r, ratio) in enumerate(zip(speed["rounds"], summary["ratios"], strict=True))
                ],
            ),
            "",
            "Mean milliseconds per file in each stage (from the sidecars' `timings_ms`, all rounds; stages run in "
            "parallel, so they do not add up to the rate):",
            "",
            stage_rows(speed["rounds"]),
            "",
            f"after / before: min {summary['min']:.2f}, median {summary['median']:.2f}, max {summary['max']:.2f}."
            + (f" {speed['note']}" if speed.get("note") else ""),
        ]
    return "\n".join(lines)


def ensure_block(markdown_path: Path, name: str = "versions") -> None:
    """An empty `<!-- bench:NAME -->` block in `markdown_path` if it has none (after the soak section, else
    before `## Denoising`, else at the end): common.write_section fills only blocks that exist."""
    content = markdown_path.read_text(encoding="utf-8") if markdown_path.exists() else ""
    if f"<!-- bench:{name} -->" in content:
        return
    block = f"<!-- bench:{name} -->\n<!-- /bench:{name} -->\n"
    anchor = "<!-- /bench:soak -->\n"
    denoising = re.search(r"^## Denoising", content, re.MULTILINE)
    if anchor in content:
        at = content.index(anchor) + len(anchor)
        content = content[:at] + "\n" + block + content[at:]
    elif denoising:
        content = content[: denoising.start()] + block + "\n" + content[denoising.start() :]
    else:
        content = content.rstrip("\n") + "\n\n" + block
    markdown_path.write_text(content, encoding="utf-8")


# -- main ---------------------------------------------------------------------------------------------
def decisions_of(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for scan in sorted(set(before) & set(after)):
        b, a = before[scan], after[scan]
        why = decision_change(b, a) if b.get("decision") != a.get("decision") else ""
        out.append(
            {
                "scan": scan,
                "before": b.get("decision"),
                "after": a.get("decision"),
                "network": a.get("network_decision"),
                "why": why,
            }
        )
    return out


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--before", default="59c2719", help="the revision before (default 59c2719)")
    p.add_argument("--after", default="HEAD", help="the revision after (default HEAD)")
    p.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help=f"real samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--model", type=Path, help=f"model file for both (default: the before revision's {MODEL_IN_REPO})")
    p.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="settle_seconds (default 0.3)")
    p.add_argument("--device", default="cpu", help="device for both (default cpu)")
    p.add_argument("--speed-files", type=int, default=500, help="synthetic scans for the speed runs (default 500)")
    p.add_argument("--size", type=int, default=256, help="their pixels per side (default 256)")
    p.add_argument("--rounds", type=int, default=3, help="before/after speed runs, alternating (default 3)")
    p.add_argument("--no-speed", action="store_true", help="compare sidecars only")
    args = p.parse_args(argv)
    if args.quick:
        args.speed_files, args.rounds = min(args.speed_files, 40), 1

    shas = {side: git("rev-parse", getattr(args, side)) for side in ("before", "after")}
    with work_folder(args, "versions") as work:
        code = {side: work / f"code-{side}" for side in shas}
        try:
            for side, sha in shas.items():
                checkout(sha, code[side])
            model = work / "model.safetensors"
            shutil.copyfile(args.model or code["before"] / MODEL_IN_REPO, model)
            model_label = str(args.model) if args.model else f"{args.before}:{MODEL_IN_REPO}"

            # the same scans for both: the real samples and a synthetic set from the before code
            real = real_samples(args.samples)
            synth = synthetic_set(code["before"], work / "synth", SYNTH_N, SYNTH_SEED, "--no-gwy", "--no-previews")
            scans = real + synth
            print(f"{len(scans)} scans: {len(real)} real, {len(synth)} synthetic", file=sys.stderr)
            sidecars = {}
            for side in shas:
                folder = work / f"sort-{side}"
                paths = run_version(code[side], scans, folder, model, args)
                sidecars[side] = read_sidecars(paths, folder)
                print(f"{side}: {len(paths)} sidecars", file=sys.stderr)
            diffs = compare(sidecars["before"], sidecars["after"])
            results: dict[str, Any] = {
                "before": {"rev": args.before, "sha": shas["before"]},
                "after": {"rev": args.after, "sha": shas["after"]},
                "model": model_label,
                "model_sha256": sha256(model),
                "settle": args.settle,
                "scans": len(scans),
                "real": len(real),
                "synthetic": len(synth),
                "differences": diffs,
                "decisions": decisions_of(sidecars["before"], sidecars["after"]),
            }

            if not args.no_speed:
                cache = args.cache / f"versions-{shas['before'][:7]}-s7-{args.size}px-n{args.speed_files}"
                files = synthetic_set(
                    code["before"],
                    cache,
                    args.speed_files,
                    7,
                    "--size",
                    str(args.size),
                    "--no-gwy",
                    "--no-previews",
                    "--no-retrace",
                )
                rounds = []
                for index in range(args.rounds):
                    one = {}
                    for side in shas:
                        one[side] = rate(code[side], files, work / f"speed-{side}-{index}", model, args)
                        print(f"round {index + 1} {side}: {one[side]['files_per_s']:.1f} files/s", file=sys.stderr)
                    rounds.append(one)
                soak = subprocess.run(["pgrep", "-f", "benchmarks.soak"], capture_output=True, text=True).stdout
                results["speed"] = {
                    "files": len(files),
                    "size": args.size,
                    "seed": 7,
                    "rounds": rounds,
                    "summary": speed_summary(rounds),
                    "note": "A soak benchmark ran on the machine meanwhile." if soak.strip() else "",
                }
        finally:
            for folder in code.values():
                remove_checkout(folder)

    target = args.markdown if (args.markdown is not None or args.quick) else None
    if target is None:
        from benchmarks.common import BENCHMARKS_MD

        target = BENCHMARKS_MD
    ensure_block(target)
    args.markdown = target
    command = f"python -m benchmarks.compare_versions --before {args.before} --after {args.after}"
    if not args.quick and not args.no_speed:
        command += f" --speed-files {args.speed_files} --rounds {args.rounds}"
    title = "Before and after: sidecars and speed of two versions"
    return report(args, "versions", command, title, markdown(results), results)


if __name__ == "__main__":
    sys.exit(main())
