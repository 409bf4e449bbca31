"""The review page in a real headless Chromium (Debian's `chromium`, driven by Playwright): overview,
one thumbnail per sorted scan, one scan, the `g` key, and the scan, sidecar and preview in good/.

`AFMWATCH_REVIEW_SCREENSHOTS=docs` also writes the README's screenshots (docs/review-*.png).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from review_support import REPO, Server, sorted_output

from afmwatch.daemon.sidecar import preview_path, sidecar_path

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if os.environ.get("AFMWATCH_REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
            pytest.fail("AFMWATCH_REQUIRE_BROWSER is set but Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _shoot(page, path: Path) -> None:
    """A screenshot, reduced to 256 colours (the README's copies stay small)."""
    from PIL import Image

    page.screenshot(path=str(path))
    with Image.open(path) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)


def _wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_an_operator_opens_the_page_checks_a_scan_and_presses_g(tmp_path, browser):
    config = sorted_output(tmp_path / "site", n=36, seed=3, subfolders=("", "sample-a", "sample-b"))
    out = tmp_path / "site" / "out"
    shots = REPO / "docs" if os.environ.get("AFMWATCH_REVIEW_SCREENSHOTS") == "docs" else tmp_path / "shots"
    shots.mkdir(exist_ok=True)
    server = Server(config)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

        page.goto(server.url + "/")
        assert page.inner_text("h1") == "Session overview"
        assert page.locator("svg.plot").count() == 6
        _shoot(page, shots / "review-overview.png")

        sorted_scans = [p for p in out.rglob("*.tif") if p.parts[-2] != "failed"]
        for order in ("uncertain", "newest"):
            page.goto(server.url + f"/grid?order={order}")
            assert page.locator(".thumb").count() == len(sorted_scans) == 36
            assert page.inner_text("#total") == "36"
        loaded = "Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"
        _wait_for(lambda: page.evaluate(loaded))
        _shoot(page, shots / "review-grid.png")

        target = page.locator(".thumb.bad").first
        scan_id = int(target.get_attribute("data-id"))
        target.locator("a").click()
        page.wait_for_url(f"**/scan/{scan_id}?**")
        assert page.inner_text("#decision") == "bad"
        assert page.locator("table.metrics tr").count() > 10
        _wait_for(lambda: page.evaluate("document.querySelector('img.large').naturalWidth > 0"))
        _shoot(page, shots / "review-scan.png")

        with sqlite3.connect(tmp_path / "site" / "state" / "journal.sqlite3") as db:
            before = Path(db.execute("SELECT final_path FROM files WHERE id = ?", (scan_id,)).fetchone()[0])
        page.keyboard.press("g")
        moved = out / "good" / before.relative_to(out / "bad")
        _wait_for(lambda: sidecar_path(moved).exists() and not before.exists())
        page.wait_for_url(lambda url: f"/scan/{scan_id}?" not in url)  # on to the next scan
        assert moved.exists() and preview_path(moved).exists()
        assert not sidecar_path(before).exists() and not preview_path(before).exists()
        review = json.loads(sidecar_path(moved).read_text())["review"]
        assert (review["from"], review["to"]) == ("bad", "good")
        with sqlite3.connect(tmp_path / "site" / "state" / "journal.sqlite3") as db:
            rows = db.execute("SELECT file_id, from_decision, to_decision, state FROM reviews").fetchall()
        assert rows == [(scan_id, "bad", "good", "done")]
        assert errors == []
    finally:
        server.stop()
