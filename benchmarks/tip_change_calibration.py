"""The evidence behind the tip-change rule's thresholds (README, "Tip changes"): how many synthetic tip
changes the score finds, per surface and mode, and how many good synthetic scans it flags at each
threshold. Re-run it whenever the generator or the metric changes; it prints Markdown tables.

    python -m benchmarks.tip_change_calibration [--bad-per-surface 30] [--good 2000] [--size 256]

A band counts as found when the reported band covers more than half of the true one or one of its
edges lies within 2 lines of a true edge. Bad scans: `synth_scan(file_rng(2026, 1000 k + i), size,
surface=..., artefacts=[("tip_change", s)])` with s from 0.5 to 1; good scans `synth_scan(file_rng(2027,
i), size, "good")`, every surface, with their trace-level artefacts.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from afmwatch.quality import measure
from afmwatch.rules import DEFAULT_RULES
from afmwatch.synth.artefacts import FEATURED
from afmwatch.synth.scans import file_rng, synth_scan


def thresholds() -> tuple[float, float]:
    """(review, bad) thresholds of the default tip-change rules."""
    found = {r.decision: r.threshold for r in DEFAULT_RULES if r.metric == "tip_change_score"}
    return float(found["review"]), float(found["bad"])


def found_band(metrics: dict, truth: dict) -> bool:
    start, end = metrics.get("tip_change_start"), metrics.get("tip_change_end")
    if start is None or end is None:
        return False
    start -= 1  # reported 1-based, inclusive; the manifest's band is 0-based, end exclusive
    true_start, true_end = truth["band_start"], truth["band_end"]
    overlap = max(0, min(end, true_end) - max(start, true_start))
    near_edge = min(abs(start - true_start), abs(end - true_end)) <= 2
    return overlap > 0.5 * (true_end - true_start) or near_edge


def bad_scans(per_surface: int, size: int) -> dict[tuple[str, str], list[tuple[float, bool]]]:
    """(surface, mode) -> [(score, band found)] for synthetic tip changes."""
    out: dict[tuple[str, str], list[tuple[float, bool]]] = defaultdict(list)
    for k, kind in enumerate(FEATURED):
        for i in range(per_surface):
            rng = file_rng(2026, 1000 * k + i)
            severity = float(np.random.default_rng([2026, k, i]).uniform(0.5, 1.0))
            scan = synth_scan(rng, size, surface=kind, artefacts=[("tip_change", severity)])
            truth = next(a for a in scan.params["artefacts"] if a["name"] == "tip_change")
            metrics = measure(*scan.scans())
            out[(kind, truth["mode"])].append((float(metrics["tip_change_score"] or 0.0), found_band(metrics, truth)))
    return out


def good_scores(count: int, size: int) -> np.ndarray:
    scores = []
    for i in range(count):
        scan = synth_scan(file_rng(2027, i), size, "good")
        scores.append(float(measure(*scan.scans())["tip_change_score"] or 0.0))
    return np.array(scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bad-per-surface", type=int, default=30)
    parser.add_argument("--good", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    review, bad = thresholds()
    results = bad_scans(args.bad_per_surface, args.size)
    modes = sorted({mode for _, mode in results})
    print(
        f"Tip changes at {args.size} lines, {args.bad_per_surface} per surface; thresholds review {review:g}, bad {bad:g}"
    )
    print()
    print("| surface | " + " | ".join(modes) + " | all: bad / flagged |")
    print("|---|" + "---|" * len(modes) + "---|")
    total: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for kind in FEATURED:
        cells, rows = [], []
        for mode in modes:
            entries = results.get((kind, mode), [])
            rows += entries
            total[mode] += entries
            cells.append(_cell(entries, review, bad))
        print(f"| {kind} | " + " | ".join(cells) + f" | {_share(rows, review, bad)} |")
    everything = [e for entries in total.values() for e in entries]
    cells = [_cell(total[mode], review, bad) for mode in modes]
    print("| **all** | " + " | ".join(cells) + f" | **{_share(everything, review, bad)}** |")
    good = good_scores(args.good, args.size)
    print()
    print(f"| threshold for review | bad tip changes flagged | good scans flagged ({args.good}) |")
    print("|---|---|---|")
    for threshold in (0.8 * review, review, 1.2 * review):
        hit = np.mean([score > threshold and found for score, found in everything])
        print(
            f"| {threshold:g} | {hit:.0%} | {np.mean(good > threshold):.2%} (of them above bad: {np.mean(good > bad):.2%}) |"
        )
    print()
    print(f"Good scans: highest score {good.max():.1f}, 99th percentile {np.percentile(good, 99):.1f}.")


def _cell(entries: list[tuple[float, bool]], review: float, bad: float) -> str:
    flagged_bad = sum(score > bad and found for score, found in entries)
    flagged = sum(score > review and found for score, found in entries)
    return f"{flagged_bad} / {flagged} of {len(entries)}"


def _share(entries: list[tuple[float, bool]], review: float, bad: float) -> str:
    if not entries:
        return "-"
    flagged_bad = np.mean([score > bad and found for score, found in entries])
    flagged = np.mean([score > review and found for score, found in entries])
    return f"{flagged_bad:.0%} / {flagged:.0%}"


if __name__ == "__main__":
    main()
