"""`build_app(settings, engine=None)`: the FastAPI application. All state lives on `app.state`
(settings, engine, service, scheduler); nothing is global, so tests build as many apps as they like."""

from __future__ import annotations

import contextlib
import logging
import uuid

from ming.config import ModelOptions
from ming.engine import create_engine
from ming.engine.base import GenerationConfig
from ming.respond import Pipeline
from ming.serve import errors, routes
from ming.serve.errors import APIError
from ming.serve.queue import Scheduler
from ming.serve.serving import ChatService
from ming.serve.settings import ServeSettings
from ming.stages import StageOptions, build

log = logging.getLogger("ming.serve")

MAX_BODY_BYTES = 8 * 1024 * 1024  # a request body larger than this gets a 413


def build_app(settings: ServeSettings | None = None, engine=None, stages=None):
    """The server for `engine` (loaded from `settings.model` when None). `stages`: the turn's stages
    (ming/stages.py); None builds them from the settings (`settings.safety`)."""
    from importlib import resources

    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    settings = (settings or ServeSettings()).validate()
    if settings.generation is None:
        settings.generation = GenerationConfig()
    if engine is None:
        engine = create_engine(settings.model or ModelOptions(), need_beam=settings.generation.num_beams > 1)
    if stages is None:
        stages = build(StageOptions(safety=settings.safety, mode=settings.mode))

    scheduler = Scheduler(engine, max_queue=settings.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        import anyio

        await anyio.to_thread.run_sync(scheduler.close, settings.shutdown_timeout)

    app = FastAPI(title="ming", description="明医 MING — OpenAI-compatible medical chat server", lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.engine = engine
    app.state.scheduler = scheduler
    app.state.service = ChatService(engine, settings, Pipeline(engine, stages, mode=settings.mode))

    app.add_middleware(RequestIdAndSize)
    errors.install_handlers(app)
    app.include_router(routes.router)
    static = resources.files("ming.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


class RequestIdAndSize:
    """Pure ASGI middleware (so disconnects still reach the endpoints): gives each request an id
    (`X-Request-Id`, also the completion id) and answers 413 to bodies over MAX_BODY_BYTES."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        import json

        rid = "chatcmpl-" + uuid.uuid4().hex[:24]
        scope.setdefault("state", {})["request_id"] = rid
        headers = dict(scope.get("headers") or [])
        size = headers.get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            err = APIError(413, f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB",
                           code="body_too_large")
            body = json.dumps(err.body()).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                    (b"x-request-id", rid.encode())]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers") or []) + [(b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)
