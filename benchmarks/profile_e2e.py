"""Profile of the daemon end to end: cProfile in every thread of an in-process `Service` while a burst
of synthetic scans is sorted, then the time each stage took in each thread, and each thread's share
of busy time. The thread that is busy nearly all the time is the bottleneck.

cProfile slows Python-heavy code (a factor of about 1.5 to 2), so the rate here is not the daemon's
rate; the shares are what count. The merged profiles are kept as `.prof` files for snakeviz/pstats.
A second run of the same burst without cProfile reads each thread's CPU time from the kernel
(Linux /proc): exact milliseconds of CPU per file for every stage's threads.

    python -m benchmarks.profile_e2e [--quick] [--files 500] [--models convnet|default] [--prof-dir DIR]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import (
    bench_models,
    copy_files,
    cpu_count,
    fmt,
    model_arguments,
    model_label,
    parser,
    report,
    setup,
    synthetic_scans,
    table,
    work_folder,
)
from benchmarks.daemon_run import drop, write_config

# (file path ending, function name) -> stage; cumulative time of the outermost call counts
STAGES: dict[tuple[str, str], str] = {
    ("afmwatch/durable.py", "sha256_file"): "hash (sha256)",
    ("afmwatch/readers/__init__.py", "read_frames"): "read",
    ("afmwatch/readers/__init__.py", "read_retrace"): "read retrace",
    ("afmwatch/quality.py", "measure"): "quality metrics",
    ("afmwatch/networks/pipeline.py", "to_array"): "preprocess",
    ("afmwatch/daemon/pool.py", "preprocess"): "preprocess (again, for a new model)",
    ("afmwatch/networks/classifier.py", "predict"): "inference",
    ("afmwatch/daemon/act.py", "_decide"): "decide (rules)",
    ("afmwatch/daemon/act.py", "_preview"): "preview PNG",
    ("afmwatch/daemon/act.py", "_denoise"): "denoise",
    ("afmwatch/daemon/act.py", "carry_out"): "sort + sidecar",
    ("afmwatch/daemon/journal.py", "add"): "journal writes",
    ("afmwatch/daemon/journal.py", "update"): "journal writes",
    ("afmwatch/daemon/journal.py", "set_service"): "journal writes",
    ("afmwatch/daemon/journal.py", "_rows"): "journal reads",
    ("afmwatch/daemon/settle.py", "_take_touched"): "settle: admit",
    ("afmwatch/daemon/settle.py", "_check_waiting"): "settle: stat",
    ("afmwatch/daemon/watcher.py", "on_any_event"): "watch events",
}
# where a thread waits rather than works (own time in these is idle time)
WAITING = re.compile(r"acquire|\bwait\b|sleep|select|poll|epoll|\bread\b of '_io.FileIO'|inotify")


def thread_group(name: str) -> str:
    """A pool's threads ('afmwatch-read-0', 'afmwatch-read-1') are one group; watchdog's threads
    and any other are 'watchdog / other'."""
    if not name.startswith("afmwatch-"):
        return "watchdog / other"
    pool = re.match(r"(afmwatch-[a-z]+)-\d+$", name)
    return f"{pool.group(1)} (all)" if pool else name


class ThreadProfiles:
    """One cProfile.Profile per new thread while active (threading.setprofile starts each one)."""

    def __init__(self) -> None:
        self.profiles: dict[str, list[cProfile.Profile]] = defaultdict(list)
        self._lock = threading.Lock()

    def _start(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        with self._lock:
            self.profiles[thread_group(threading.current_thread().name)].append(profile)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start)
        return self

    def __exit__(self, *exc: Any) -> None:
        threading.setprofile(None)

    def stats(self) -> dict[str, pstats.Stats]:
        merged = {}
        for group, profiles in self.profiles.items():
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
            merged[group] = stats
        return merged


def stage_times(stats: pstats.Stats) -> dict[str, tuple[int, float]]:
    """stage -> (calls, cumulative seconds) in one thread group."""
    found: dict[str, tuple[int, float]] = {}
    for (filename, _, function), (_, calls, _, cumulative, _) in stats.stats.items():
        for (ending, name), stage in STAGES.items():
            if function == name and filename.replace("\\", "/").endswith(ending):
                before = found.get(stage, (0, 0.0))
                found[stage] = (before[0] + calls, before[1] + cumulative)
    return found


def busy_seconds(stats: pstats.Stats) -> tuple[float, float]:
    """(all own time, own time spent waiting) of a thread group."""
    total = waiting = 0.0
    for (_, _, function), (_, _, own, _, _) in stats.stats.items():
        total += own
        if WAITING.search(function):
            waiting += own
    return total, waiting


def top_functions(stats: pstats.Stats, count: int) -> list[tuple[str, float]]:
    """The functions with the most own time (waiting excluded), as 'module:function'."""
    rows = []
    for (filename, line, function), (_, _, own, _, _) in stats.stats.items():
        if WAITING.search(function):
            continue
        where = re.sub(r".*/(site-packages|lib/python[\d.]+|work/main)/", "", filename)
        rows.append((f"{where}:{line} {function}" if line else function, own))
    return sorted(rows, key=lambda r: -r[1])[:count]


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each thread group of this process, from
    /proc/self/task; threads Python does not know (PyTorch's, SQLite's) are 'native threads'.
    Empty where /proc is missing (not Linux)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return {}
    names = {t.native_id: thread_group(t.name) for t in threading.enumerate()}
    names[threading.main_thread().native_id] = "main (benchmark)"
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = defaultdict(float)
    for task in tasks.iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        used[names.get(int(task.name), "native threads")] += (int(fields[11]) + int(fields[12])) / tick
    return dict(used)


def sort_burst(service: Any, files: list[Path], work: Path, on_done: Any = None) -> float:
    """Drop `files` into the running service's inbox; returns the wall seconds until all are sorted.
    `on_done` runs before the service stops (its threads still alive)."""
    from afmwatch.daemon.journal import FINAL_STATES

    began = time.monotonic()
    drop(files, work / "inbox")
    deadline = began + 300 + 5.0 * len(files)
    while time.monotonic() < deadline:
        counts = service.journal.counts()
        if sum(counts.get(s, 0) for s in FINAL_STATES) >= len(files):
            break
        time.sleep(0.2)
    wall = time.monotonic() - began
    if on_done is not None:
        on_done()
    return wall


def cpu_run(files: list[Path], model: Path, work: Path, *, settle: float, device: str) -> dict[str, Any]:
    """The same burst without cProfile: CPU seconds per thread group during it, the reader processes'
    (their start-up included), and the total."""
    from afmwatch.config import load_config
    from afmwatch.daemon.service import Service

    config_path = write_config(
        work, model, settle_seconds=settle, device=device, read_workers=cpu_count(), batch_size=16
    )
    staging = copy_files(files, work / "staging")
    children_before = _children_cpu_seconds()
    service = Service(load_config(config_path), config_path=config_path)
    service.start()
    before, process_before = thread_cpu_seconds(), time.process_time()
    after: dict[str, float] = {}
    wall = sort_burst(service, staging, work, lambda: after.update(thread_cpu_seconds()))
    process = time.process_time() - process_before
    service.stop()  # the reader processes end here, and their CPU time is counted as the children's
    groups = {g: after[g] - before.get(g, 0.0) for g in after}
    readers = _children_cpu_seconds() - children_before
    if readers > 0:
        groups["reader processes (all)"] = readers
    return {"wall_s": wall, "process_cpu_s": process + readers, "groups": groups}


def _children_cpu_seconds() -> float:
    """User + system CPU of the child processes that have ended (the daemon's reader processes)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def profile_run(files: list[Path], model: Path, work: Path, *, settle: float, device: str) -> dict[str, Any]:
    """Sort `files` with an in-process Service, every thread profiled; returns stages and shares.
    The files are read in the reader threads themselves (`reader_processes: false`), where cProfile
    sees the reading stages; the daemon normally reads in worker processes (see `cpu_run`)."""
    from afmwatch.config import load_config
    from afmwatch.daemon.service import Service

    config_path = write_config(
        work,
        model,
        settle_seconds=settle,
        device=device,
        read_workers=cpu_count(),
        batch_size=16,
        reader_processes=False,
    )
    staging = copy_files(files, work / "staging")
    with ThreadProfiles() as profiles:
        service = Service(load_config(config_path), config_path=config_path)
        service.start()
        wall = sort_burst(service, staging, work)
        service.stop()
    groups = {}
    for group, stats in sorted(profiles.stats().items()):
        total, waiting = busy_seconds(stats)
        groups[group] = {
            "threads": len(profiles.profiles[group]),
            "busy_s": total - waiting,
            "stages": stage_times(stats),
            "top": top_functions(stats, 8),
        }
        stats.dump_stats(str(work / f"{re.sub(r'[^a-z0-9]+', '-', group.lower()).strip('-')}.prof"))
    return {"files": len(files), "wall_s": wall, "groups": groups}


def cpu_markdown(cpu: dict[str, Any], files: int) -> str:
    rows = [
        [group, fmt(seconds, 2), fmt(1000 * seconds / files, 1), f"{100 * seconds / cpu['process_cpu_s']:.0f} %"]
        for group, seconds in sorted(cpu["groups"].items(), key=lambda kv: -kv[1])
        if seconds > 0
    ]
    return (
        f"**CPU by thread**, a second run of the same {files} scans without cProfile and with the daemon's "
        "default reader processes (sorted in "
        f"{cpu['wall_s']:.1f} s = {fmt(files / cpu['wall_s'])} files/s, settle wait included; "
        f"{fmt(1000 * cpu['process_cpu_s'] / files, 1)} ms of CPU per file in all), from the kernel's "
        "per-thread accounting:\n\n" + table(["thread", "CPU s", "CPU ms per file", "share of the process"], rows)
    )


def markdown(result: dict[str, Any], label: str, prof_dir: Path | None) -> str:
    files, wall = result["files"], result["wall_s"]
    stage_rows = []
    for group, info in result["groups"].items():
        for stage, (calls, seconds) in sorted(info["stages"].items(), key=lambda kv: -kv[1][1]):
            stage_rows.append([stage, group, calls, fmt(seconds, 2), fmt(1000 * seconds / files, 1)])
    stage_rows.sort(key=lambda r: -float(r[3].replace(",", "")))
    thread_rows = [
        [group, info["threads"], fmt(info["busy_s"], 2), f"{100 * info['busy_s'] / (wall * info['threads']):.0f} %"]
        for group, info in result["groups"].items()
    ]
    top = "\n".join(
        f"- **{group}**: " + "; ".join(f"`{name}` {seconds:.2f} s" for name, seconds in info["top"][:5])
        for group, info in result["groups"].items()
        if info["top"]
    )
    kept = f" The merged profiles are in `{prof_dir}`." if prof_dir else ""
    return (
        f"cProfile in every thread of an in-process `Service` ({label}) while {files} synthetic scans dropped at "
        f"once were sorted in {wall:.1f} s (profiling slows the Python parts, so this is not the daemon's "
        f"rate). Here the reader threads read the files themselves (`reader_processes: false`), so that "
        f"cProfile sees every stage; the daemon's default reads in worker processes.{kept}\n\n**Stages**, cumulative time of the outermost call, by thread:\n\n"
        + table(["stage", "thread", "calls", "seconds", "ms per file"], stage_rows)
        + "\n\n**Threads**: time not waiting on a queue, lock, sleep or the file system, per thread; a "
        "thread near 100 % is the bottleneck:\n\n"
        + table(["thread", "threads", "busy s", "busy share of the run"], thread_rows)
        + "\n\n**Top functions by own time** (waiting excluded):\n\n"
        + top
    )


def main(argv: list[str] | None = None) -> int:
    p = parser("cProfile of the daemon end to end, by stage and by thread.")
    p.add_argument("--files", type=int, default=500, help="scans dropped at once (default 500)")
    model_arguments(p, "default")  # the first one listed is profiled; the convnet when the default is missing
    p.add_argument("--settle", type=float, default=0.5, help="settle_seconds (default 0.5)")
    p.add_argument("--prof-dir", type=Path, help="keep the merged .prof files here")
    args = p.parse_args(argv)
    device = setup(args)
    if args.quick:
        args.files, args.settle = 12, 0.3
    size = 64 if args.quick else 256
    files = synthetic_scans(args.files, size, args.cache)
    with work_folder(args, "profile") as work:
        models, notes = bench_models(work / "models", args.models.split(",")[:1])
        if not models:
            models, _ = bench_models(work / "models", ["convnet"])
        name, model = next(iter(models.items()))
        label = model_label(name, model)
        result = profile_run(files, model, work / "run", settle=args.settle, device=device)
        cpu = cpu_run(files, model, work / "cpu", settle=args.settle, device=device)
        if args.prof_dir is not None:
            args.prof_dir.mkdir(parents=True, exist_ok=True)
            for prof in (work / "run").glob("*.prof"):
                prof.replace(args.prof_dir / prof.name)
        body = markdown(result, f"{label}, {device}", args.prof_dir)
        if cpu["groups"]:
            body += "\n\n" + cpu_markdown(cpu, len(files))
    body += "".join(f"\n\nNote: {note}." for note in notes)
    return report(
        args,
        "profile",
        "python -m benchmarks.profile_e2e",
        "Profile of the end-to-end run",
        body,
        {"model": label, "device": device, **result, "cpu": cpu},
    )


if __name__ == "__main__":
    sys.exit(main())
