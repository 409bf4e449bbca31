"""`afmwatch inspect FILE... [--json]`: what afmwatch reads in each file, before anything is sorted.

Per file: format, channels found, the channel chosen, size in pixels, pixel size, z range and whether
the scan can be classified. Exit status 0 only when every file was readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afmwatch.config import ReadingConfig
from afmwatch.scan import Scan


def _quality(frames: list[Scan], reading: ReadingConfig) -> dict[str, Any]:
    """The first frame's quality metrics and what the default rules say (as `afmwatch quality --json`)."""
    from afmwatch.quality import measure
    from afmwatch.readers import read_retrace
    from afmwatch.verdict import rules_block

    return rules_block(measure(frames[0], read_retrace(frames[0], reading)))


# Extra per-file blocks in the report: name -> function of the file's frames (and the reading
# settings) returning JSON-able data; filled in by other parts (e.g. quality metrics).
REPORT_BLOCKS: dict[str, Callable[[list[Scan], ReadingConfig], Any]] = {"quality": _quality}

MIN_CLASSIFIABLE_SIDE = 16
MIN_MEASURED_FRACTION = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="scan files or image exports; a folder stands for every supported file in it (recursively)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON array, an object per file")
    parser.add_argument("--channel", help="read this channel instead of the preferred height channel")
    parser.add_argument("--config", help="take the reading settings (channel preferences, data area) from this file")
    parser.add_argument(
        "--data-area",
        choices=["auto", "crop-right-30", "whole"],
        help="how to find the scan in image exports (default: the config's, else auto)",
    )


def classifiable(scan: Scan) -> tuple[bool, str | None]:
    """Whether the classifier can judge this scan, and if not, why (in words)."""
    import numpy as np

    if scan.units not in ("nm", "a.u."):
        return False, f"channel {scan.channel!r} is not a height channel (units {scan.units})"
    if min(scan.shape) < MIN_CLASSIFIABLE_SIDE:
        return False, f"too small ({scan.shape[0]} x {scan.shape[1]} px; at least {MIN_CLASSIFIABLE_SIDE} needed)"
    measured = float(np.isfinite(scan.height).mean())
    if measured < MIN_MEASURED_FRACTION:
        return False, f"only {measured:.0%} of the pixels hold measured values"
    if scan.z_range() == 0:
        return False, "the image is flat (every pixel has the same value)"
    return True, None


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def file_report(
    path: str | Path, reading: ReadingConfig | None = None, *, channel: str | None = None
) -> tuple[dict[str, Any], list[Scan]]:
    """The per-file report (the `--json` object) and the frames read (empty when unreadable)."""
    from afmwatch.readers import read_frames
    from afmwatch.scan import ScanError

    reading = reading or ReadingConfig()
    report: dict[str, Any] = {
        "path": str(path),
        "ok": False,
        "format": None,
        "channels": [],
        "channel": None,
        "direction": None,
        "shape": None,
        "frames": 0,
        "pixel_size_nm": None,
        "units": None,
        "z_range_nm": None,
        "z_range": None,
        "classifiable": False,
        "not_classifiable_because": None,
        "metadata": {},
        "error": None,
    }
    try:
        frames = read_frames(path, reading, channel=channel)
    except ScanError as exc:
        report["error"] = str(exc)
        return report, []
    scan = frames[0]
    ok_to_classify, why_not = classifiable(scan)
    z_range = scan.z_range()
    report.update(
        ok=True,
        format=scan.format,
        channels=list(scan.channels),
        channel=scan.channel,
        direction=scan.direction,
        shape=list(scan.shape),
        frames=len(frames),
        pixel_size_nm=_rounded(scan.pixel_size_nm),
        units=scan.units,
        z_range_nm=_rounded(z_range) if scan.is_height else None,
        z_range=_rounded(z_range),
        classifiable=ok_to_classify,
        not_classifiable_because=why_not,
        metadata={k: v for k, v in scan.metadata.items() if k != "frame_times_s"},
    )
    for name, block in REPORT_BLOCKS.items():
        report[name] = block(frames, reading)
    return report, frames


def _text(report: dict[str, Any]) -> str:
    from afmwatch.readers import FORMAT_NAMES

    name = report["path"]
    if not report["ok"]:
        return f"{name}: cannot read: {report['error'].split(': ', 1)[-1]}"
    meta = report["metadata"]
    rows, cols = report["shape"]
    size = f"{rows} x {cols} px"
    if report["frames"] > 1:
        size += f", {report['frames']} frames"
    if report["pixel_size_nm"]:
        size += f", {report['pixel_size_nm']:.4g} nm/px"
        if meta.get("scan_size_nm"):
            size += " ({:.5g} x {:.5g} nm)".format(*meta["scan_size_nm"])
    else:
        size += ", pixel size unknown"
    channel = f"{report['channel']} ({report['direction']})"
    if meta.get("retrace_channel"):
        channel += f"; retrace: {meta['retrace_channel']}"
    z_range = (
        f"{report['z_range_nm']:.4g} nm"
        if report["z_range_nm"] is not None
        else f"{report['z_range']:.4g} {report['units']} ({meta.get('image_values', 'uncalibrated')})"
    )
    lines = [
        f"{name}: {FORMAT_NAMES.get(report['format'], report['format'])}",
        f"  channels:   {', '.join(report['channels'])}",
        f"  channel:    {channel}",
        f"  size:       {size}",
        f"  z range:    {z_range}",
    ]
    if "data_area" in meta:
        lines.append(
            "  data area:  rows {}-{}, columns {}-{} of the image".format(
                meta["data_area"][0], meta["data_area"][2] - 1, meta["data_area"][1], meta["data_area"][3] - 1
            )
        )
    if meta.get("lines_acquired") is not None and meta.get("lines_set"):
        lines.append(f"  lines:      {meta['lines_acquired']} of {meta['lines_set']} recorded")
    if meta.get("instrument"):
        lines.append(f"  instrument: {meta['instrument']}")
    verdict = "yes" if report["classifiable"] else f"no, {report['not_classifiable_because']}"
    lines.append(f"  classifiable: {verdict}")
    return "\n".join(lines)


def expand_folders(names: list[str]) -> list[Path]:
    """Files as given; a folder becomes the supported files below it, sorted (afmwatch's own
    previews and sidecars left out)."""
    from afmwatch.readers import is_supported

    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            paths.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and is_supported(p) and ".afmwatch." not in p.name)
            )
        else:
            paths.append(path)
    return paths


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from afmwatch.config import ConfigError, load_config

    reading = ReadingConfig()
    if args.config:
        try:
            reading = load_config(args.config).reading
        except ConfigError as exc:
            print(f"{exc.source}: invalid configuration", file=sys.stderr)
            for error in exc.errors:
                print(f"  - {error}", file=sys.stderr)
            return 2
    if args.data_area:
        reading = dataclasses.replace(reading, data_area=args.data_area)
    reports = [file_report(path, reading, channel=args.channel)[0] for path in expand_folders(args.files)]
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
    else:
        print("\n".join(_text(report) for report in reports))
    return 0 if all(report["ok"] for report in reports) else 1
