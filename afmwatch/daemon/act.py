"""Acting on a classified scan: decide (`afmwatch.verdict`), preview, denoise, sort, write the sidecar, record it.

Exactly once: the complete sidecar (with the planned final path) is committed to the journal as
`acting` *before* anything is moved. `carry_out` then makes the folders match the plan and is
idempotent, so after a crash at any instant `afmwatch.daemon.reconcile` runs it again and every
input ends in exactly one place with exactly one sidecar.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import structlog

from afmwatch import __version__
from afmwatch.config import Config
from afmwatch.daemon.identity import Identity, still_same
from afmwatch.daemon.job import Job
from afmwatch.daemon.journal import State
from afmwatch.daemon.runtime import Runtime
from afmwatch.daemon.settle import Settler
from afmwatch.daemon.sidecar import (
    SCHEMA_VERSION,
    iso_utc,
    plain,
    preview_path,
    sidecar_bytes,
    sidecar_path,
    write_sidecar,
)
from afmwatch.daemon.stage import STOP, Stage
from afmwatch.daemon.waiting import cause_of
from afmwatch.durable import SourceChanged, atomic_write_bytes, free_folders, fsync_dir, safe_move, sha256_file
from afmwatch.errors import AfmwatchError
from afmwatch.level import level
from afmwatch.names import fitted, path_text, text_path
from afmwatch.render import png_bytes, preview_image
from afmwatch.scan import ScanError
from afmwatch.verdict import Decision, Policy, caption, decide, failed

log = structlog.get_logger("afmwatch.act")

DECISION_FOLDERS = tuple(Decision)  # good, bad, review, failed


class ActError(AfmwatchError):
    """The plan for one file cannot be carried out (its original changed or vanished, a name is taken)."""


# -- where a scan goes ------------------------------------------------------------------------------
def relative_path(path: Path, watch_folder: Path) -> Path:
    try:
        return path.relative_to(watch_folder)
    except ValueError:
        return Path(path.name)


def destination(path: Path, config: Config, decision: str) -> Path:
    """Where a scan goes: output_root/<decision>/<its subfolder below the watch folder>/<name>."""
    if config.sort == "none":
        return path
    assert config.output_root is not None and config.watch_folder is not None  # checked before the service starts
    return config.output_root / decision / relative_path(path, config.watch_folder)


def free_destination(dest: Path, reserved: AbstractSet[Path] = frozenset(), base: Path | None = None) -> Path:
    """`dest`, or `name-1.ext`, `name-2.ext`, ...: the first where neither the scan nor its sidecar
    exists and that no other act thread has `reserved`; a folder below `base` on the way that is
    taken by a file gets a numbered name too."""
    if base is not None:
        dest = free_folders(dest, base)
    stem, dot, suffix = dest.name.partition(".")
    candidate, n = dest, 0
    while candidate in reserved or os.path.lexists(candidate) or sidecar_path(candidate).exists():
        n += 1
        candidate = dest.with_name(fitted(f"{stem}-{n}", f"{dot}{suffix}"))
    return candidate


# -- carrying out a plan (shared with reconcile) ----------------------------------------------------
def _same_file(original: Path, final: Path, sha256: str | None) -> bool:
    try:
        if os.path.samefile(original, final):
            return True
        if sha256 is not None:
            return sha256_file(original) == sha256
        return original.stat().st_size == final.stat().st_size
    except OSError:
        return False


def carry_out(sidecar: dict[str, Any], *, verify: bool, expected: Identity | None = None) -> dict[str, Any]:
    """Make the folders match the plan in `sidecar` and write the sidecar; safe to repeat.

    `verify` (after a crash) checks content by hash before trusting what is on disk. `expected` is
    the file that was hashed and read: the original must still be that file when it moves, else
    SourceChanged and nothing moves. Returns the sidecar as written (its final and sidecar paths
    change only if the planned name was taken meanwhile).
    """
    original = text_path(sidecar["original_path"])
    final = text_path(sidecar["final_path"])
    sort, sha256 = sidecar["sort"], sidecar["sha256"]
    if sort != "none":
        if final.exists():
            if verify and sha256 is not None and sha256_file(final) != sha256:
                raise ActError(f"{final} holds a different file than planned")
            if sort == "move" and original.exists() and _same_file(original, final, sha256):
                os.unlink(original)  # the move was interrupted between link and unlink
                fsync_dir(original.parent)
        else:
            if not original.exists():
                raise ActError(f"{original.name} vanished before it could be sorted")
            if verify and sha256 is not None and sha256_file(original) != sha256:
                raise ActError(f"{original.name} changed before it could be sorted")
            if expected is not None and not still_same(original, expected):
                raise SourceChanged(f"{path_text(original.name)} changed after it was read")
            placed = safe_move(
                original,
                final,
                copy_only=sort == "copy",
                expect=expected.matches if expected is not None else None,
                sha256=sha256 if expected is not None else None,
            )
            if placed != final:
                sidecar = dict(sidecar, final_path=path_text(placed), sidecar_path=path_text(sidecar_path(placed)))
                final = placed
    elif not original.exists():
        raise ActError(f"{original.name} vanished before its sidecar was written")
    write_sidecar(final, sidecar)
    return sidecar


def final_state(decision: str) -> State:
    """The journal's state for a file sorted with `decision`."""
    return State.FAILED if decision == Decision.FAILED else State.DONE


# -- the act thread ---------------------------------------------------------------------------------
class Actor(Stage):
    """`act_workers` threads: act queue -> decision, preview, denoise, sort, sidecar, journal.

    Previews and denoising are the slow part and run in parallel; choosing a free destination name
    is serialised (`_naming`), and a name stays reserved until its scan is there.
    """

    inbox: queue.Queue  # always the runtime's act queue
    stall_seconds = 300.0  # one scan takes seconds (a verified copy of a large file across file systems: minutes)

    def __init__(self, runtime: Runtime, settler: Settler):
        workers = runtime.config.workers
        super().__init__(
            runtime, "afmwatch-act", count=workers.act_workers or workers.read_workers, inbox=runtime.act_queue
        )
        self.settler = settler
        self.device = runtime.device
        self._naming = threading.Lock()
        self._reserved: set[Path] = set()
        self._denoiser_lock = threading.Lock()
        self._denoiser: tuple[Path, Any] | None = None

    def run(self) -> None:
        while True:
            self.beat()
            try:
                job = self.inbox.get(timeout=1.0)
            except queue.Empty:
                continue
            if job is STOP:
                return
            try:
                self.act(job)
            except Exception as exc:  # output full or read-only, no permission, the journal full, a bug
                self._postpone(job, exc)
            finally:
                self.settler.finished(job.path)

    def _postpone(self, job: Job, exc: Exception) -> None:
        """Sorting this scan failed: a committed plan (`acting`) waits for the retrier
        (`afmwatch.daemon.retry`) and this thread goes on with the next scan; a scan that failed
        before its plan was committed goes back to settle and is read again after a pause."""
        config = self.runtime.config
        cause, lasting = cause_of(exc, config)
        if not isinstance(exc, OSError | AfmwatchError):  # a bug: with its traceback
            log.exception("act_failed", file=str(job.path))
        try:
            entry = self.runtime.journal.get(job.arrival.entry_id)
        except Exception:  # the journal cannot even be read: the scan stays in the watch folder
            log.exception("act_failed", file=str(job.path))
            return
        if entry is not None and entry.state == State.ACTING:
            waiting = self.runtime.sort_waiting.add(entry.id, entry.path, cause, lasting, str(exc), config.sort_retry)
            log.warning("sort_waiting", file=str(job.path), cause=cause, error=str(exc), attempts=waiting.attempts)
            return
        backoff = config.sort_retry.max_backoff_seconds
        log.warning("act_postponed", file=str(job.path), cause=cause, error=str(exc), retry_in_s=backoff)
        job.arrival.attempts = max(0, job.arrival.attempts - 1)  # not the file's fault: no attempt counted
        self.settler.retry(job.arrival, backoff)

    def act(self, job: Job) -> None:
        config = self.runtime.config
        started = time.monotonic()
        if self._changed_since_settled(job):
            return
        errors = list(job.arrival.errors)
        result = self._decide(job, config)
        decision = result["decision"]
        final = job.path
        if config.sort != "none":
            with self._naming:
                assert config.output_root is not None  # sort: move or copy needs one
                final = free_destination(
                    destination(job.path, config, decision), self._reserved, config.output_root / decision
                )
                self._reserved.add(final)
        try:
            self._finish(job, config, result, final, errors, started)
        finally:
            with self._naming:
                self._reserved.discard(final)

    def _finish(
        self, job: Job, config: Config, result: dict[str, Any], final: Path, errors: list[str], started: float
    ) -> None:
        """Preview, denoise, commit the plan (`acting`), carry it out, record the result."""
        decision = result["decision"]
        watch_folder = config.watch_folder
        assert watch_folder is not None  # the service does not start without one
        preview = None
        if config.previews and job.frames:
            try:
                preview = self._preview(job, final, result["caption"])
            except (OSError, ValueError) as exc:
                errors.append(f"preview not written: {exc}")
        denoised = self._denoise(job, config, final, decision) if config.denoise.enabled and job.frames else None
        job.add_time("act", time.monotonic() - started)
        now = time.time()
        job.add_time("total", max(0.0, now - job.arrival.seen_at))
        sidecar = plain(
            {
                "schema_version": SCHEMA_VERSION,
                "afmwatch_version": __version__,
                "original_path": path_text(job.path),
                "final_path": path_text(final),
                "sidecar_path": path_text(sidecar_path(final)),
                "relative_path": path_text(relative_path(job.path, watch_folder).as_posix()),
                "sort": config.sort,
                "sha256": job.sha256,
                "size_bytes": job.size,
                **_scan_fields(job),
                **{k: v for k, v in result.items() if k != "caption"},
                "quality": job.quality,
                "denoised": denoised,
                "duplicate_of": job.duplicate_of.final_path if job.duplicate_of else None,
                "preview": path_text(preview) if preview else None,
                "timings_ms": dict(job.timings_ms),
                "settle_attempts": job.arrival.attempts,
                "errors": errors + ([job.failure] if job.failure and job.failure not in " ".join(errors) else []),
                "seen_at": iso_utc(job.arrival.seen_at),
                "settled_at": iso_utc(job.arrival.settled_at),
                "processed_at": iso_utc(now),
            }
        )
        journal = self.runtime.journal
        entry_id = job.arrival.entry_id
        journal.update(
            entry_id, durable=True, state=State.ACTING, final_path=path_text(final), sidecar=sidecar, decision=decision
        )
        self.runtime.faults.before_move(job.path)
        try:
            written = carry_out(sidecar, verify=False, expected=job.identity)
        except SourceChanged:  # rewritten or replaced after it was read: nothing moved; read it again
            if preview is not None:
                preview.unlink(missing_ok=True)
            journal.update(entry_id, final_path=None, sidecar=None, decision=None)
            self.settler.changed(job.arrival)
            return
        except PermissionError as exc:
            if decision != Decision.FAILED:
                raise
            written = self._failed_in_place(job, sidecar, exc)
        except ActError as exc:
            log.info("scan_vanished", file=str(job.path), reason=str(exc))
            journal.update(entry_id, state=State.VANISHED, error=str(exc))
            return
        journal.update(
            entry_id, state=final_state(decision), final_path=written["final_path"], sidecar=written, error=job.failure
        )
        self.runtime.metrics.count(decision)
        for stage, ms in job.timings_ms.items():
            self.runtime.metrics.observe(stage, ms / 1000.0)
        log.info(
            "scan_sorted",
            file=str(job.path),
            decision=decision,
            label=result["label"],
            confidence=result["confidence"],
            to=written["final_path"],
            rule=result["rule"]["metric"] if result.get("rule") else None,
            reason=result["reasons"][0],
            error=job.failure,
        )

    def _failed_in_place(self, job: Job, sidecar: dict[str, Any], exc: PermissionError) -> dict[str, Any]:
        """A scan that failed and that the service may not move (nor copy) stays where it is, recorded
        as failed there; its sidecar goes where the scan would have gone, if that can be written."""
        reason = f"no permission to move the file ({exc.strerror or exc}); it stays where it is"
        log.warning("scan_failed_in_place", file=str(job.path), reason=reason)
        planned = text_path(sidecar["final_path"])
        written = dict(sidecar, final_path=sidecar["original_path"], errors=[*sidecar["errors"], reason])
        written["sidecar_path"] = path_text(sidecar_path(planned))
        try:
            atomic_write_bytes(sidecar_path(planned), sidecar_bytes(written))
        except OSError as write_error:
            written["sidecar_path"] = None
            log.warning("sidecar_not_written", file=str(job.path), error=str(write_error))
        return written

    def _changed_since_settled(self, job: Job) -> bool:
        """A file that grew or changed while it was read (the instrument was not done), or that the path
        no longer names (replaced, swapped for a link or FIFO), settles again."""
        if job.identity is not None:
            if still_same(job.path, job.identity):
                return False
            if not os.path.lexists(job.path):
                log.info("scan_vanished", file=str(job.path))
                self.runtime.journal.update(
                    job.arrival.entry_id, state=State.VANISHED, error="the file disappeared while it was processed"
                )
                return True
            self.settler.changed(job.arrival)
            return True
        try:
            stat = job.path.stat()
        except FileNotFoundError:
            log.info("scan_vanished", file=str(job.path))
            self.runtime.journal.update(
                job.arrival.entry_id, state=State.VANISHED, error="the file disappeared while it was processed"
            )
            return True
        if (stat.st_size, stat.st_mtime_ns) == (job.arrival.size, job.arrival.mtime_ns):
            return False
        log.info(
            "scan_changed", file=str(job.path), note="changed while it was processed; waiting for it to settle again"
        )
        self.runtime.journal.update(job.arrival.entry_id, state=State.SEEN)
        self.settler.retry(job.arrival, 0.0)
        return True

    def _decide(self, job: Job, config: Config) -> dict[str, Any]:
        """The sidecar's decision fields (`verdict.decide`, as every command decides) and the caption."""
        if job.duplicate_of is not None:
            earlier = job.duplicate_of.sidecar or {}
            keys = (
                "label",
                "decision",
                "confidence",
                "probabilities",
                "network_decision",
                "model_parts",
                "familiarity",
                "rule",
                "model",
                "frames",
                "multiframe_rule",
            )
            result = {k: earlier.get(k) for k in keys}
            result["decision"] = job.duplicate_of.decision or earlier.get("decision", Decision.REVIEW)
            job.quality = earlier.get("quality")
            reason = (
                f"identical content (sha256) to {job.duplicate_of.final_path}, processed before; not classified again"
            )
            result["reasons"] = [reason, *earlier.get("reasons", [])]
            result["caption"] = f"{result['decision']}: duplicate of {Path(job.duplicate_of.final_path or '').name}"
            return result
        if job.failure:
            verdict = failed(job.failure)
        else:
            verdict = decide(job.predictions, job.quality, Policy.from_config(config))
        return {**verdict.to_dict(), "model": job.model, "caption": caption(verdict, len(job.frames))}

    def _preview(self, job: Job, final: Path, text: str) -> Path:
        """The levelled first frame, colour-mapped, with a scale bar and the decision and its reason."""
        scan = level(job.frames[0], self.runtime.config.reading.level_polynomial)
        image = preview_image(*_enlarged(scan), caption=text)
        path = preview_path(final)
        atomic_write_bytes(path, png_bytes(image), sync=False)  # a power cut may cost a preview, never a scan
        return path

    def _denoise(self, job: Job, config: Config, final: Path, decision: str) -> dict[str, Any]:
        """Denoise the (first) frame and judge the copy with the guard (`afmwatch.denoise.guard`: a copy
        that changed the surface beyond the noise is named so and its verdict is in the sidecar); a
        failure never blocks sorting, it is recorded in the sidecar."""
        from afmwatch.denoise.model import load_denoiser
        from afmwatch.denoise.write import write_denoised
        from afmwatch.networks.model_file import ModelError

        model = config.denoise.model
        assert model is not None  # the config requires one when denoising is enabled
        started = time.monotonic()
        try:
            with self._denoiser_lock:
                if self._denoiser is None or self._denoiser[0] != model:
                    self._denoiser = (model, load_denoiser(model, device=self.device))
                denoiser = self._denoiser[1]
            if config.denoise.location == "tree":
                assert config.output_root is not None and config.watch_folder is not None  # a loaded config has both
                below = relative_path(job.path, config.watch_folder).parent
                out_dir = config.output_root / "denoised" / decision / below
            else:
                out_dir = final.parent
            levelled = level(job.frames[0], config.reading.level_polynomial)  # as `afmwatch denoise` does
            denoised, guard = denoiser.denoise_checked(levelled)
            paths = write_denoised(denoised, out_dir, config.denoise.formats, original=levelled, guard=guard)
            block = {"paths": [str(p) for p in paths], "model": str(model), "error": None, "guard": guard.to_dict()}
            if not guard.faithful:
                log.warning(
                    "denoised_not_a_measurement", file=str(job.path), verdict=guard.verdict, reasons=guard.reasons
                )
        except (ModelError, ScanError, OSError, ValueError, RuntimeError) as exc:
            log.warning("denoise_failed", file=str(job.path), error=str(exc))
            block = {"paths": [], "model": str(model), "error": str(exc), "guard": None}
        job.add_time("denoise", time.monotonic() - started)
        return block


PREVIEW_MIN_SIZE = 256  # pixels: smaller scans are enlarged (nearest neighbour) so the caption fits


def _enlarged(scan: Any) -> tuple[Any, float | None]:
    """Height and pixel size of `scan`, repeated to at least PREVIEW_MIN_SIZE pixels wide."""
    factor = -(-PREVIEW_MIN_SIZE // max(1, max(scan.shape)))
    if factor <= 1:
        return scan.height, scan.pixel_size_nm
    height = scan.height.repeat(factor, axis=0).repeat(factor, axis=1)
    return height, (scan.pixel_size_nm / factor if scan.pixel_size_nm else None)


def _scan_fields(job: Job) -> dict[str, Any]:
    keys = ("format", "channel", "channels", "units", "shape", "pixel_size_nm")
    if job.duplicate_of is not None and job.duplicate_of.sidecar:
        return {k: job.duplicate_of.sidecar.get(k) for k in keys}
    if not job.frames:
        return {"format": None, "channel": None, "channels": [], "units": None, "shape": None, "pixel_size_nm": None}
    scan = job.frames[0]
    return {
        "format": scan.format,
        "channel": scan.channel,
        "channels": list(scan.channels),
        "units": scan.units,
        "shape": list(scan.shape),
        "pixel_size_nm": scan.pixel_size_nm,
    }
