"""How far an artefact shows above the noise, recorded in the manifest beside its severity.

A tip change drawn over bare background between sparse fibres, or a smear of grains far wider than the
tip moved, changes little that shows above the noise; such a scan is still labelled bad (its severity
says a microscopist would reject it), and `visibility` lets an evaluation tell a miss of a plain fault
from a miss of one nobody could see. It is the largest change of heights over a stretch of
`VISIBLE_LINES` lines by 1 / `VISIBLE_STRETCHES` of their length, RMS in units of the noise RMS (each
line's median change removed first: levelling removes a line offset). Five lines is the shortest
tip-change band, an eighth of a line the stretch the tip-change metric judges (`quality.TIP_SEGMENTS`);
`VISIBLE_NOISE_MULTIPLE` (three standard deviations, the usual limit of detection) is where the README
and the card count an artefact as seen.

Drawing hidden artefacts again until they show was tried (models/README.md, "Alternatives measured and
not shipped"): the network and metrics model retrained on such scans were no better on either test set
and sent more clean real scans to review.
"""

from __future__ import annotations

import numpy as np

VISIBLE_NOISE_MULTIPLE = 3.0
VISIBLE_LINES = 5
VISIBLE_STRETCHES = 8
# artefacts whose effect depends on the surface under them (a tip images what is there; drift moves it);
# the others add heights of their own, scaled to the features and the noise
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
    # mean square per stretch of each line, then averaged over every run of `lines` lines
    per_line = square.reshape(rows, stretches, width).mean(axis=2)
    runs = np.lib.stride_tricks.sliding_window_view(per_line, lines, axis=0).mean(axis=2)
    largest = float(np.sqrt(runs.max())) if runs.size else 0.0
    if noise_rms_nm <= 0:
        return float("inf") if largest > 0 else 0.0
    return largest / noise_rms_nm
