"""What a file's own structure says about its completeness (FileFormat.complete), the decoded-size
budget of the image readers, and which reading errors are permanent (failed/ at once)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from afmwatch.config import ReadingConfig
from afmwatch.readers import FORMATS, is_complete, read_scan
from afmwatch.scan import PermanentScanError, ScanError
from afmwatch.writers import write_tiff

CHECKED = {
    "ibw/ARHeight_0000.ibw": "ibw",
    "nid/image.nid": "nid",
    "nid/thermal.nid": "nid",
    "bruker/old_bruker.002": "spm",
    "jpk/sample_0.jpk": "jpk",
}


def _complete(path: Path, data: bytes) -> bool | None:
    path.write_bytes(data)
    with open(path, "rb") as handle:
        return is_complete(path, handle)


@pytest.mark.parametrize("sample", sorted(CHECKED))
def test_a_sample_is_complete_and_any_cut_of_it_is_not(samples, tmp_path, sample):
    data = (samples / sample).read_bytes()
    target = tmp_path / Path(sample).name
    assert _complete(target, data) is True
    for cut in (len(data) // 10, len(data) // 2, len(data) * 9 // 10):
        assert _complete(target, data[:cut]) is False, f"{sample} cut at {cut} of {len(data)} bytes"


def test_tiff_data_past_the_end_is_incomplete(tmp_path):
    whole = write_tiff(tmp_path / "whole.tif", np.ones((64, 64), np.float32), 1.0).read_bytes()
    assert _complete(tmp_path / "x.tif", whole) is True
    assert _complete(tmp_path / "x.tif", whole[: len(whole) - 100]) is False


def test_a_format_without_a_check_cannot_tell(samples, tmp_path):
    assert _complete(tmp_path / "a.png", (samples / "png" / "minicircle_colorbar_afmhot.png").read_bytes()) is None
    assert _complete(tmp_path / "empty.nid", b"") is None  # an empty file: the reader says why
    # not the start of any NID header: not an unfinished NID either (it must fail at once, not wait)
    assert _complete(tmp_path / "junk.nid", b"not a scan") is None
    assert _complete(tmp_path / "part.nid", b"[Data") is False  # the first bytes of one: still coming
    assert {key for key, record in FORMATS.items() if record.complete} >= {"ibw", "nid", "spm", "tiff", "jpk"}


def test_check_reads_only_its_handle():
    from afmwatch.readers.asylum import ibw_complete

    assert ibw_complete(io.BytesIO(b"\x05\x00"), 2) is False


def test_images_over_the_memory_budget_are_refused_before_decoding(tmp_path):
    from PIL import Image

    png = tmp_path / "big.png"
    Image.new("RGB", (1000, 1000), (10, 20, 30)).save(png)
    tif = write_tiff(tmp_path / "big.tif", np.zeros((500, 500), np.float32), 1.0)
    budget = ReadingConfig(max_image_bytes=500_000)
    with pytest.raises(PermanentScanError, match=r"big\.png: the image would decode to 3 MiB .*max_image_bytes"):
        read_scan(png, budget)
    with pytest.raises(PermanentScanError, match=r"big\.tif: the image would decode to 1 MiB"):
        read_scan(tif, budget)
    assert read_scan(png).shape == (1000, 1000)  # within the default budget


def test_errors_that_never_pass_are_permanent_and_damage_is_not(samples, tmp_path):
    (tmp_path / "png-named.nid").write_bytes((samples / "png" / "minicircle_colorbar_afmhot.png").read_bytes())
    (tmp_path / "cut.nid").write_bytes((samples / "nid" / "image.nid").read_bytes()[:30000])
    permanent = {
        samples / "nid" / "thermal.nid": "holds no image",
        tmp_path / "png-named.nid": "content looks like a PNG",
    }
    for path, words in permanent.items():
        with pytest.raises(PermanentScanError, match=words):
            read_scan(path)
    with pytest.raises(PermanentScanError, match="max_pixels"):
        read_scan(samples / "nid" / "image.nid", ReadingConfig(max_pixels=100))
    with pytest.raises(ScanError) as truncated:
        read_scan(tmp_path / "cut.nid")
    assert not isinstance(truncated.value, PermanentScanError)  # may be still being written: tried again
