"""The review page as a Starlette app: HTML pages, the JSON API under /api, previews and sidecars.

Routes only translate HTTP to the modules that own the work: `queries` (what the journal says),
`afmwatch.daemon.correct` (moving a scan exactly once), `whatif` (rules), `plots` (SVG), `security`
(checked in one middleware for every request). Scans are addressed by their journal id only; a path
never comes from the request. Blocking work (SQLite, file moves) runs in Starlette's thread pool.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import structlog
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from afmwatch.config import ConfigError
from afmwatch.daemon.correct import CorrectionRefused, Pause, UnsafePath, checked_path, correct, recover_corrections
from afmwatch.daemon.sidecar import preview_path, sidecar_path
from afmwatch.names import text_path
from afmwatch.review import plots, queries, whatif
from afmwatch.review.context import ReviewContext
from afmwatch.review.security import PUBLIC_PATHS, SESSION_COOKIE, TOKEN_HEADER, Guard

log = structlog.get_logger("afmwatch.review")

HERE = Path(__file__).parent
PAGE_SIZE = 60
MAX_BATCH = 500
TREND_TITLES = {
    "scar_fraction": ("Scar fraction per scan", "fraction of lines"),
    "tip_change_score": ("Tip-change score per scan", "score"),
    "line_artefact_ratio": ("Line artefacts per scan", "line / pixel steps"),
    "trace_retrace_mismatch": ("Trace/retrace mismatch per scan", "x roughness"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# -- security, for every request --------------------------------------------------------------------
class GuardMiddleware(BaseHTTPMiddleware):
    """Host header, login (away from loopback), token and origin for changes, read-only mode."""

    def __init__(self, app: Any, guard: Guard, read_only: bool):
        super().__init__(app)
        self.guard = guard
        self.read_only = read_only

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        guard, path = self.guard, request.url.path
        if not guard.host_allowed(request.headers.get("host")):
            return PlainTextResponse("unexpected Host header (DNS rebinding?)", 400)
        changing = request.method not in ("GET", "HEAD", "OPTIONS")
        if changing and not guard.origin_allowed(request.headers.get("origin")):
            return _error("cross-origin request refused", 403)
        public = path.startswith(PUBLIC_PATHS)
        has_token = guard.token_ok(request.headers.get(TOKEN_HEADER))
        logged_in = has_token or guard.session_ok(request.cookies.get(SESSION_COOKIE))
        if guard.login_required and not public and not logged_in:
            if path.startswith("/api/") or changing:
                return _error("log in first, or send the token in X-Afmwatch-Token", 401)
            return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
        if changing and path != "/login":
            if self.read_only:
                return _error("this review page is read-only (--read-only)", 403)
            if not has_token:
                return _error("missing or wrong X-Afmwatch-Token header", 403)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# -- reading requests -------------------------------------------------------------------------------
def _filter(request: Request) -> tuple[queries.ScanFilter, str]:
    params = request.query_params
    decision = params.get("decision") or None
    if decision is not None and decision not in queries.DECISIONS:
        raise HTTPException(400, f"decision must be one of {', '.join(queries.DECISIONS)}")
    order = params.get("order") or "newest"
    if order not in queries.ORDERS:
        raise HTTPException(400, f"order must be one of {', '.join(queries.ORDERS)}")
    reviewed = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}.get(
        params.get("reviewed", "").lower()
    )
    days = []
    for key in ("from", "to"):
        value = params.get(key) or None
        if value is not None and not (
            len(value) == 10 and value[4] == "-" and value[7] == "-" and value.replace("-", "").isdigit()
        ):
            raise HTTPException(400, f"{key} must be a date, YYYY-MM-DD")
        days.append(value)
    return (
        queries.ScanFilter(
            decision=decision,
            reason=params.get("reason") or None,
            folder=params.get("folder") if params.get("folder") not in (None, "__all__") else None,
            day_from=days[0],
            day_to=days[1],
            reviewed=reviewed,
        ),
        order,
    )


def _int(request: Request, key: str, default: int) -> int:
    try:
        return int(request.query_params.get(key, default))
    except ValueError:
        raise HTTPException(400, f"{key} must be a whole number") from None


def _who(request: Request, body: dict[str, Any]) -> str:
    client = request.client.host if request.client else "?"
    named = body.get("who") or request.headers.get("x-afmwatch-user")
    return f"{named} ({client})" if named else f"api ({client})"


async def _json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object; with `optional` an empty body stands for {} (`curl -X POST .../undo`)."""
    if optional and not (await request.body()).strip():
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


def create_app(ctx: ReviewContext, guard: Guard, *, pause: Pause | None = None) -> Starlette:
    """The app over `ctx`; finishes corrections a crash interrupted and indexes older scans first."""
    recovered = recover_corrections(ctx.state_folder, ctx.output_root)
    with ctx.connect() as connection:
        indexed = queries.index_missing(connection, ctx.output_root)
    if recovered["finished"] or recovered["failed"] or indexed:
        log.info("review_prepared", corrections=recovered, indexed=indexed)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    loop = _loop_routes(ctx)
    templates.env.globals.update(
        token=ctx.token, read_only=ctx.read_only, colours=plots.DECISION_COLOURS, has_models=bool(loop)
    )

    @contextlib.contextmanager
    def db() -> Iterator[Any]:
        with ctx.connect() as connection:
            yield connection

    def page(request: Request, name: str, **values: Any) -> Response:
        values.setdefault("alerts", _alerts(ctx))
        return templates.TemplateResponse(request, name, values)

    # -- pages --------------------------------------------------------------------------------------
    def overview(request: Request) -> Response:
        with db() as connection:
            summary = queries.summary(connection)
        config = ctx.current_config()
        rules = whatif.rules_in_force(config)
        hours = summary["per_hour"]
        labels = [h["hour"] for h in hours]
        charts = {
            "per_hour": Markup(plots.bars([h["scans"] for h in hours], labels, "Scans per hour", "scans")),
            "share_bad": Markup(
                plots.bars(
                    [h["share_bad"] for h in hours],
                    labels,
                    "Share bad per hour",
                    "share bad",
                    colour=plots.DECISION_COLOURS["bad"],
                    y_max=1.0,
                    fmt="{:.0%}",
                )
            ),
        }
        trends = summary["trends"]
        for metric, (title, unit) in TREND_TITLES.items():
            limits = [(r.threshold, r.decision) for r in rules if r.metric == metric and r.op in (">", ">=")]
            charts[metric] = Markup(
                plots.trend(trends[metric], trends["decisions"], trends["ids"], title, unit, limits)
            )
        return page(request, "overview.html", summary=summary, charts=charts, nav="overview")

    def grid(request: Request) -> Response:
        scan_filter, order = _filter(request)
        offset, limit = _int(request, "offset", 0), _int(request, "limit", PAGE_SIZE)
        with db() as connection:
            result = queries.list_scans(connection, scan_filter, order, limit, offset)
            options = queries.facets(connection)
        query = {k: v for k, v in request.query_params.items() if k not in ("offset",) and v}
        return page(
            request,
            "grid.html",
            result=result,
            options=options,
            query=query,
            order=order,
            nav="grid",
            decisions=queries.DECISIONS,
            filter=scan_filter,
        )

    def scan_page(request: Request) -> Response:
        scan_id = request.path_params["scan_id"]
        scan_filter, order = _filter(request)
        with db() as connection:
            scan = queries.get_scan(connection, scan_id, ctx.output_root, ctx.current_config())
            if scan is None:
                raise HTTPException(404, f"no sorted scan with id {scan_id}")
            previous, following = queries.neighbours(connection, scan_id, scan_filter, order)
        z = scan["z_range_nm"]
        scale = Markup(plots.colour_scale("0", f"{z:.3g} nm" if z is not None else "z range unknown"))
        query = urlencode({k: v for k, v in request.query_params.items() if v})
        return page(
            request,
            "scan.html",
            scan=scan,
            previous=previous,
            following=following,
            scale=scale,
            query=query,
            nav="grid",
        )

    def rules_page(request: Request) -> Response:
        config = ctx.current_config()
        rules = [whatif.rule_to_dict(r) for r in whatif.rules_in_force(config)]
        return page(request, "rules.html", rules=rules, nav="rules", rules_json=json.dumps(rules))

    def login(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": None, "next": request.query_params.get("next", "/"), "alerts": [], "token": ""},
        )

    async def login_post(request: Request) -> Response:
        # a plain urlencoded form, parsed here (Starlette's form parser would need python-multipart)
        form = {k: v[0] for k, v in parse_qs((await request.body())[:4096].decode("utf-8", "replace")).items()}
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if not guard.token_ok(str(form.get("token") or "")):
            return templates.TemplateResponse(
                request,
                "login.html",
                {"error": "wrong token", "next": target, "alerts": [], "token": ""},
                status_code=403,
            )
        response = RedirectResponse(target, 303)
        response.set_cookie(
            SESSION_COOKIE,
            guard.session_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    # -- files --------------------------------------------------------------------------------------
    def file(request: Request) -> Response:
        scan_id, kind = request.path_params["scan_id"], request.path_params["kind"]
        if kind not in ("preview", "sidecar", "original"):
            raise HTTPException(404, "no such file")
        with db() as connection:
            row = connection.execute("SELECT final_path, state FROM files WHERE id = ?", (scan_id,)).fetchone()
        if row is None or not row["final_path"] or row["state"] not in queries.LISTED_STATES:
            raise HTTPException(404, f"no sorted scan with id {scan_id}")
        final = text_path(row["final_path"])
        target = {"preview": preview_path(final), "sidecar": sidecar_path(final), "original": final}[kind]
        try:
            safe = checked_path(target, ctx.output_root)
            fd = os.open(safe, os.O_RDONLY | os.O_NOFOLLOW)
        except UnsafePath as exc:
            return _error(str(exc), 403)
        except FileNotFoundError:
            raise HTTPException(404, f"{target.name} is not there (moved or deleted by hand?)") from None
        except OSError as exc:  # ELOOP: a link put in its place
            return _error(f"{target.name}: cannot be opened ({exc.strerror})", 403)
        media = {"preview": "image/png", "sidecar": "application/json", "original": "application/octet-stream"}[kind]
        headers = {"Content-Length": str(os.fstat(fd).st_size)}
        if kind == "original":
            headers["Content-Disposition"] = _attachment(final)
        return StreamingResponse(_chunks(fd), media_type=media, headers=headers)

    # -- the API ------------------------------------------------------------------------------------
    def api_scans(request: Request) -> Response:
        scan_filter, order = _filter(request)
        with db() as connection:
            result = queries.list_scans(
                connection, scan_filter, order, _int(request, "limit", PAGE_SIZE), _int(request, "offset", 0)
            )
        return JSONResponse(result)

    def api_scan(request: Request) -> Response:
        scan_id = request.path_params["scan_id"]
        with db() as connection:
            scan = queries.get_scan(connection, scan_id, ctx.output_root, ctx.current_config())
        if scan is None:
            return _error(f"no sorted scan with id {scan_id}", 404)
        return JSONResponse(scan)

    def _correct(request: Request, scan_id: int, body: dict[str, Any], undo: bool) -> Response:
        try:
            result = correct(
                ctx.state_folder,
                ctx.output_root,
                scan_id,
                body.get("decision"),
                _who(request, body),
                expected_from=body.get("from"),
                undo=undo,
                pause=pause,
            )
        except CorrectionRefused as exc:
            return _error(str(exc), exc.status)
        with db() as connection:
            scan = queries.get_scan(connection, scan_id, ctx.output_root, ctx.current_config())
        return JSONResponse({**(scan or {}), "correction": result})

    async def api_decision(request: Request) -> Response:
        body = await _json_body(request)
        if body.get("decision") not in ("good", "bad", "review"):
            return _error("decision must be good, bad or review", 422)
        return await run_in_threadpool(_correct, request, request.path_params["scan_id"], body, False)

    async def api_undo(request: Request) -> Response:
        body = await _json_body(request, optional=True)
        return await run_in_threadpool(_correct, request, request.path_params["scan_id"], body, True)

    async def api_decisions(request: Request) -> Response:
        body = await _json_body(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > MAX_BATCH:
            return _error(f"ids must be a list of at most {MAX_BATCH} scan ids", 422)
        if body.get("decision") not in ("good", "bad", "review"):
            return _error("decision must be good, bad or review", 422)

        def each() -> list[dict[str, Any]]:
            results = []
            for scan_id in ids:
                try:
                    outcome = correct(
                        ctx.state_folder, ctx.output_root, scan_id, body["decision"], _who(request, body), pause=pause
                    )
                    results.append({"id": scan_id, "ok": True, **outcome})
                except CorrectionRefused as exc:
                    results.append({"id": scan_id, "ok": False, "error": str(exc), "status": exc.status})
            return results

        results = await run_in_threadpool(each)
        return JSONResponse({"results": results, "changed": sum(1 for r in results if r.get("changed"))})

    def api_summary(request: Request) -> Response:
        with db() as connection:
            return JSONResponse(queries.summary(connection))

    def api_alerts(request: Request) -> Response:
        return JSONResponse({"alerts": _alerts(ctx)})

    def api_facets(request: Request) -> Response:
        with db() as connection:
            return JSONResponse(queries.facets(connection))

    async def api_whatif(request: Request) -> Response:
        body = await _json_body(request)
        try:
            proposed = whatif.parse_rules(body.get("rules"))
        except ConfigError as exc:
            return _error("; ".join(exc.errors), 422)

        def run() -> dict[str, Any]:
            with db() as connection:
                return whatif.what_if(connection, ctx.current_config(), proposed)

        return JSONResponse(await run_in_threadpool(run))

    async def api_rules_save(request: Request) -> Response:
        body = await _json_body(request)
        try:
            proposed = whatif.parse_rules(body.get("rules"))
            await run_in_threadpool(whatif.save_rules, ctx.config_path, proposed)
        except ConfigError as exc:
            return _error("; ".join(exc.errors), 422)
        with db() as connection:
            service = {r["key"]: json.loads(r["value"]) for r in connection.execute("SELECT key, value FROM service")}
        reload = whatif.signal_daemon(service)
        log.info("rules_saved", config=str(ctx.config_path), rules=len(proposed), reload=reload)
        return JSONResponse({"saved": str(ctx.config_path), "rules": len(proposed), "daemon": reload})

    routes: list[BaseRoute] = [
        Route("/", overview),
        Route("/grid", grid),
        Route("/scan/{scan_id:int}", scan_page),
        Route("/rules", rules_page),
        Route("/login", login, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/files/{scan_id:int}/{kind:str}", file),
        Route("/api/scans", api_scans),
        Route("/api/scans/{scan_id:int}", api_scan),
        Route("/api/scans/{scan_id:int}/decision", api_decision, methods=["POST"]),
        Route("/api/scans/{scan_id:int}/undo", api_undo, methods=["POST"]),
        Route("/api/decisions", api_decisions, methods=["POST"]),
        Route("/api/summary", api_summary),
        Route("/api/alerts", api_alerts),
        Route("/api/facets", api_facets),
        Route("/api/rules/whatif", api_whatif, methods=["POST"]),
        Route("/api/rules", api_rules_save, methods=["POST"]),
        *loop,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, guard=guard, read_only=ctx.read_only)],
        exception_handlers={HTTPException: _http_error},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return _error(str(exc.detail), exc.status_code)
    return PlainTextResponse(str(exc.detail), exc.status_code)


def _chunks(fd: int, size: int = 1 << 16) -> Iterator[bytes]:
    """The bytes of an opened file, in pieces (an original scan may be large); closes it at the end."""
    try:
        while block := os.read(fd, size):
            yield block
    finally:
        os.close(fd)


def _loop_routes(ctx: ReviewContext) -> list[BaseRoute]:
    """The model-loop routes (training candidates, model diff, alerts) when that module is installed."""
    if importlib.util.find_spec("afmwatch.review.loop_routes") is None:
        return []
    module = importlib.import_module("afmwatch.review.loop_routes")
    return list(module.loop_routes(ctx))


def _alerts(ctx: ReviewContext) -> list[dict[str, Any]]:
    """The alerts module's banners when it exists, else the journal's recent failures."""
    if importlib.util.find_spec("afmwatch.review.alerts") is not None:
        current = getattr(importlib.import_module("afmwatch.review.alerts"), "current_alerts", None)
        if current is not None:
            return list(current(ctx))
    with ctx.connect() as db:
        recent = queries.failures(db, limit=5, since=time.time() - 86400)
    return [
        {
            "kind": "file_failed",
            "level": "warning",
            "message": f"{Path(f['file']).name}: {f['error'] or f['state']}",
            "at": f["at"],
            "id": f["id"],
        }
        for f in recent
    ]


def _attachment(path: Path) -> str:
    """Content-Disposition for a download named like the scan: an ASCII fallback name, and the real one
    (RFC 5987, UTF-8 percent-encoded; bytes that are not UTF-8 as the replacement character)."""
    from urllib.parse import quote

    name = os.fsencode(path.name).decode("utf-8", errors="replace")
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
