"""What training a metrics model with its one-direction model costs in measurement: `measure_directions`
(the metrics with and without the retrace, what they share computed once) against `measure` (with the
retrace only), on synthetic grain films with their retrace, best of two rounds each, interleaved, so the
ratio holds on a busy machine. Inference is not affected: it measures each scan once, as before.

    python -m benchmarks.measure_directions [--scans 6] [--sizes 256,512,1024]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--scans", type=int, default=6)
    args.add_argument("--sizes", default="256,512,1024")
    options = args.parse_args(argv)

    import numpy as np

    from afmwatch.quality import measure, measure_directions
    from afmwatch.scan import Scan
    from afmwatch.synth import synth_scan

    print("size   measure ms   measure_directions ms   ratio")
    for size in (int(s) for s in options.sizes.split(",")):
        pairs = []
        for seed in range(options.scans):
            made = synth_scan(np.random.default_rng(seed), size, surface="grains")
            trace = Scan(made.trace, made.pixel_size_nm, "Height", Path("trace.tif"), "tiff")
            retrace = Scan(made.retrace, made.pixel_size_nm, "Height", Path("retrace.tif"), "tiff")
            pairs.append((trace, retrace))
        best = {"measure": float("inf"), "directions": float("inf")}
        for _ in range(2):
            for name, function in (("measure", measure), ("directions", measure_directions)):
                started = time.perf_counter()
                for trace, retrace in pairs:
                    function(trace, retrace)
                best[name] = min(best[name], (time.perf_counter() - started) / len(pairs) * 1000)
        ratio = best["directions"] / best["measure"]
        print(f"{size:<6} {best['measure']:>10.1f}   {best['directions']:>21.1f}   {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
