"""Synthetic AFM scans: good surfaces, named artefacts with severities, tip dilation, the imaging
nuisances every scan has (tip-limited smoothness, coloured noise, mild shadows), and sets on disk.

Like Gwyddion's Synthetic modules, in physical units (nm), for tests, demos, benchmarks and the
shipped default models.
"""

from afmwatch.synth.artefacts import ARTEFACTS, applicable, line_noise_field
from afmwatch.synth.scans import BAD, GOOD, LINES_MIX, SynthScan, file_rng, synth_scan
from afmwatch.synth.sets import generate_classify_set, generate_denoise_set
from afmwatch.synth.surfaces import DENOISE_SHAPES, SURFACES, Surface, deposited_shapes

__all__ = [
    "ARTEFACTS",
    "BAD",
    "DENOISE_SHAPES",
    "GOOD",
    "LINES_MIX",
    "SURFACES",
    "Surface",
    "SynthScan",
    "applicable",
    "deposited_shapes",
    "file_rng",
    "generate_classify_set",
    "generate_denoise_set",
    "line_noise_field",
    "synth_scan",
]
