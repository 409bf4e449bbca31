"""The machine the numbers come from: CPU model, cores, memory, GPU, Python, PyTorch and afmwatch.

python -m benchmarks.machine [--quick] [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, cpu_count, parser, report, table


def _proc_value(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


@cache
def describe() -> dict[str, Any]:
    """Everything that decides how fast afmwatch can be here."""
    import torch

    from afmwatch import __version__

    memory_kb = _proc_value("/proc/meminfo", "MemTotal")
    info: dict[str, Any] = {
        "cpu": _proc_value("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores_usable": cpu_count(),
        "cores_host": os.cpu_count(),
        "memory_gib": round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "afmwatch": __version__,
        "git_commit": _git_commit(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["gpus"].append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
        info["cuda"] = torch.version.cuda
    return info


def short_description() -> str:
    """One line for every section: '2-core Intel Xeon ..., 8 GiB, no GPU, torch 2.14.1'."""
    m = describe()
    gpu = ", ".join(g["name"] for g in m["gpus"]) or "no GPU"
    return f"{m['cores_usable']}-core {m['cpu']}, {m['memory_gib']} GiB, {gpu}, torch {m['torch']}"


def markdown(m: dict[str, Any]) -> str:
    gpus = "; ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in m["gpus"]) or "none (CPU only)"
    rows = [
        ["CPU", m["cpu"]],
        ["cores", f"{m['cores_usable']} usable ({m['cores_host']} on the host)"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["GPU", gpus + (f", CUDA {m['cuda']}" if m.get("cuda") else "")],
        ["system", m["os"]],
        ["Python", m["python"]],
        ["PyTorch", f"{m['torch']} ({m['torch_threads']} CPU threads)"],
        ["afmwatch", f"{m['afmwatch']}, commit {m['git_commit'] or 'unknown'}"],
    ]
    return table(["", ""], rows)


def main(argv: list[str] | None = None) -> int:
    args = parser("Describe the machine the benchmarks run on.").parse_args(argv)
    info = describe()
    return report(args, "machine", "python -m benchmarks.machine", "Machine", markdown(info), {"machine": info})


if __name__ == "__main__":
    sys.exit(main())
