"""Whether an artefact can be seen: a scan labelled bad must be bad for something a microscopist sees.

A tip change drawn on a stretch of bare background between sparse fibres, or a smear of grains far wider
than the tip moved, changes nothing that shows above the noise; labelled bad, such a scan teaches a
classifier noise. An artefact counts as seen where it changes the heights of some stretch of
`VISIBLE_LINES` lines by 1 / `VISIBLE_STRETCHES` of their length by at least `VISIBLE_NOISE_MULTIPLE`
times the noise RMS (each line's median change removed first: levelling removes a line offset). Three
standard deviations is the usual limit of detection; five (Rose's criterion, which the noise floor keeps
for the features themselves, `imaging.noise_floor`) left a fifth of the tip changes unseen even at severity
1, since erasing a pattern only five times the noise changes it by about 2.5 times the noise RMS. Five lines
is the shortest tip-change band, an eighth of a line the stretch the tip-change metric judges
(`quality.TIP_SEGMENTS`).
"""

from __future__ import annotations

import numpy as np

VISIBLE_NOISE_MULTIPLE = 3.0
VISIBLE_LINES = 5
VISIBLE_STRETCHES = 8
# an artefact whose draw hides it is drawn again, up to this many times in all, its severity rising
# evenly to 1 on the last try
VISIBLE_TRIES = 8
# artefacts whose effect depends on the surface under them (a tip images what is there; drift moves it);
# the others add heights of their own, scaled to the features and the noise, and always show
SURFACE_DEPENDENT_STAGES = ("tip", "geometry")


def visibility(before: np.ndarray, after: np.ndarray, noise_rms_nm: float) -> float:
    """The largest change from `before` to `after` (same rows; `before` may be wider and is cut to
    `after`'s width), as RMS over a stretch of VISIBLE_LINES lines by 1 / VISIBLE_STRETCHES of a line, in
    units of the noise RMS. 0 where nothing changed; inf with no noise."""
    rows, cols = after.shape
    change = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)[:, :cols]
    change = change - np.median(change, axis=1, keepdims=True)
    lines, width = min(VISIBLE_LINES, rows), max(cols // VISIBLE_STRETCHES, 1)
    stretches = cols // width
    square = change[:, : stretches * width] ** 2
    # mean square per stretch of each line, then summed over every run of `lines` lines
    per_line = square.reshape(rows, stretches, width).mean(axis=2)
    runs = np.lib.stride_tricks.sliding_window_view(per_line, lines, axis=0).mean(axis=2)
    largest = float(np.sqrt(runs.max())) if runs.size else 0.0
    if noise_rms_nm <= 0:
        return float("inf") if largest > 0 else 0.0
    return largest / noise_rms_nm


def is_visible(score: float) -> bool:
    return score >= VISIBLE_NOISE_MULTIPLE


def try_severities(severity: float) -> list[float]:
    """The severities of the tries for an artefact drawn at `severity`: that first, then rising to 1."""
    steps = VISIBLE_TRIES - 1
    return [severity + (1.0 - severity) * k / steps for k in range(VISIBLE_TRIES)]
