"""The review page's model-loop API, mounted by `afmwatch.review.app`:

    GET  /api/models            the store (models, active, history), scans checked since the active
                                model was trained, the candidate job
    GET  /api/models/training   the candidate job: state, progress step, and when done the comparison
    POST /api/models/train      start a candidate job {"scope": "checked"|"sorted", "arch", "epochs", "folds"}
    POST /api/models/promote    {"model": "candidate" | a name in the store, "force": false}
    POST /api/models/rollback   {"model": a name in the store} (none: the model active before this one)
    GET  /models                the page for all of it (templates/loop_models.html, static/loop_models.js)

The app's guard checks the Host header, and the `X-Afmwatch-Token` header and read-only mode for every
POST, before any of these run. Models are loaded and verified in a worker thread (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from afmwatch.networks import store
from afmwatch.networks.model_file import ModelError, read_metadata
from afmwatch.review import models_loop
from afmwatch.review.alerts import current_alerts
from afmwatch.review.context import ReviewContext
from afmwatch.training.promotion import promote_checked


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any] | None:
    """The JSON object sent (an empty body is an empty object), or None when it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def models_overview(ctx: ReviewContext) -> dict[str, Any]:
    """What the page's model panel shows."""
    config = ctx.config
    active = models_loop.active_model(config)
    meta = read_metadata(active)
    since = models_loop.trained_at(active)
    with ctx.connect() as db:
        checked = models_loop.checked_since(db, since)
    folder = config.model_folder
    return {
        "model_folder": str(folder) if folder else None,
        "active": {**store.model_summary(active, meta, None), "active": True},
        "models": store.list_models(folder) if folder else [],
        "history": store.history(folder) if folder else [],
        "checked_since_training": {"count": checked, "trained_at": meta.get("created")},
        "training": models_loop.job_status(ctx.state_folder),
    }


def loop_routes(ctx: ReviewContext) -> list[BaseRoute]:
    """The routes above, bound to `ctx`."""
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    templates.env.globals.update(token=ctx.token, read_only=ctx.read_only, has_models=True)  # this page is in the menu

    async def page(request: Request) -> Response:
        values = await run_in_threadpool(lambda: {"overview": models_overview(ctx), "alerts": current_alerts(ctx)})
        return templates.TemplateResponse(request, "loop_models.html", {**values, "nav": "models"})

    def store_folder() -> Path:
        if ctx.config.model_folder is None:
            raise models_loop.LoopRefused("no model_folder in the config: there is no model store to change", 400)
        return ctx.config.model_folder

    async def overview(request: Request) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(models_overview, ctx))
        except ModelError as exc:
            return _error(str(exc), 500)

    async def training(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(models_loop.job_status, ctx.state_folder))

    async def train(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return _error("the body must be a JSON object", 400)

        def start() -> dict[str, Any]:
            with ctx.connect() as db:
                return models_loop.start_training(
                    ctx.config, ctx.config_path, ctx.state_folder, ctx.output_root, db, body
                )

        try:
            return JSONResponse(await run_in_threadpool(start), status_code=202)
        except (models_loop.LoopRefused, ModelError) as exc:
            return _error(str(exc), getattr(exc, "status", 500))

    async def promote(request: Request) -> Response:
        body = await _body(request)
        if body is None or not isinstance(body.get("model"), str) or not isinstance(body.get("force", False), bool):
            return _error('send {"model": "candidate" or a model name, "force": false}', 400)

        def install() -> dict[str, Any]:
            folder = store_folder()
            name = body["model"]
            path = (
                models_loop.candidate_path(ctx.state_folder) if name == "candidate" else store.find_model(name, folder)
            )
            result = promote_checked(path, folder, None, force=body.get("force", False))
            return {"promoted": path.name, **result}

        return await _store_action(install)

    async def rollback(request: Request) -> Response:
        body = await _body(request)
        if body is None or not isinstance(body.get("model"), (str, type(None))):
            return _error('send {"model": a model name} or nothing (the model active before this one)', 400)

        def restore() -> dict[str, Any]:
            target = store.rollback(store_folder(), body.get("model"))
            return {"active": target.name, "history": store.history(store_folder())}

        return await _store_action(restore)

    return [
        Route("/models", page, methods=["GET"]),
        Route("/api/models", overview, methods=["GET"]),
        Route("/api/models/training", training, methods=["GET"]),
        Route("/api/models/train", train, methods=["POST"]),
        Route("/api/models/promote", promote, methods=["POST"]),
        Route("/api/models/rollback", rollback, methods=["POST"]),
    ]


async def _store_action(action: Any) -> Response:
    """Run a store change in a worker thread; refusals become a message with their status."""
    try:
        return JSONResponse(await run_in_threadpool(action))
    except models_loop.LoopRefused as exc:
        return _error(str(exc), exc.status)
    except ModelError as exc:
        return _error(str(exc), 409)
