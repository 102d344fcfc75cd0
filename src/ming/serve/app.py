"""`build_app(settings, engine=None)`: the FastAPI application. All state lives on `app.state`
(settings, engine, service, scheduler); nothing is global, so tests build as many apps as they like."""

from __future__ import annotations

import contextlib
import json
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
from ming.stages import build, stage_options

log = logging.getLogger("ming.serve")

MAX_BODY_BYTES = 8 * 1024 * 1024  # a request body larger than this gets a 413


def build_app(settings: ServeSettings | None = None, engine=None, stages=None):
    """The server for `engine` (loaded from `settings.model` when None). `stages`: the turn's stages
    (ming/stages.py); None builds them from the settings (safety, retrieval, stages_off)."""
    from importlib import resources

    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    settings = (settings or ServeSettings()).validate()
    if settings.generation is None:
        settings.generation = GenerationConfig()
    if engine is None:
        engine = create_engine(settings.model or ModelOptions(), need_beam=settings.generation.num_beams > 1,
                               scoring_sequence=settings.triage_model)
    if stages is None:
        stages = serve_stages(settings)

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
    app.state.max_token_chars = routes.max_token_chars(engine)  # bounds the text a prompt can hold, see check_length

    app.add_middleware(RequestGuard, settings=settings)
    errors.install_handlers(app)
    app.include_router(routes.router)
    static = resources.files("ming.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def serve_stages(settings: ServeSettings) -> list:
    """The turn's stages for the server's settings (safety, retrieval, stages_off, --triage-model, --triage-probe
    (default: off, ming.safety.probe_triage.resolve), --triage-ngram (default: on)): each request's
    turn is prepared in its own thread while others generate, so the model triage step holds the engine."""
    from ming.safety import ngram_triage, probe_triage

    probe, _ = probe_triage.resolve(settings.triage_probe, settings.safety)
    ngram = ngram_triage.resolve(settings.triage_ngram, settings.safety)
    # English messages, which the n-gram step does not read, go to the model's yes/no where it was measured (the
    # embedded 1.5B on llama.cpp: decided when the stage binds the engine)
    english = ngram and not settings.triage_model and settings.safety != "off"
    return build(stage_options(settings.safety, settings.mode, retrieval=settings.retrieval,
                               stages_off=settings.stages_off,
                               triage_model=settings.triage_threshold if settings.triage_model else None,
                               triage_probe=probe, triage_ngram=ngram, triage_english=english,
                               concurrent=True))


DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json")  # behind the API key when there is one


class RequestGuard:
    """Pure ASGI middleware (so disconnects still reach the endpoints), in front of every request:

    - gives it an id (`X-Request-Id`, also the completion id);
    - reads the body here, counting bytes as they arrive: over MAX_BODY_BYTES is a 413 whatever the
      transfer encoding (Content-Length or chunked), before anything parses or tokenizes it;
    - keeps /docs and /openapi.json behind the API key when the server has one;
    - turns an exception that escapes the app into a 500 in OpenAI's format and one log line (the
      traceback only with --log-requests), instead of uvicorn's "Exception in ASGI application"."""

    def __init__(self, app, settings: ServeSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = "chatcmpl-" + uuid.uuid4().hex[:24]
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": list(message.get("headers") or []) + [(b"x-request-id", rid.encode())]}
            await send(message)

        headers = dict(scope.get("headers") or [])
        if scope.get("path") in DOC_PATHS:
            err = routes.auth_error(self.settings.api_key, headers.get(b"authorization", b"").decode("latin-1"))
            if err is not None:
                return await _answer(send_with_id, err, rid)
        too_large = APIError(413, f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB",
                             code="body_too_large")
        size = headers.get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            return await _answer(send_with_id, too_large, rid)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending its body
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > MAX_BODY_BYTES:
                return await _answer(send_with_id, too_large, rid)
            if not message.get("more_body", False):
                break
        body = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():
            return body.pop() if body else await receive()

        try:
            await self.app(scope, replay, send_with_id)
        except Exception as exc:
            err = errors.internal_error(exc, rid, self.settings.log_requests)
            if not started:
                await _answer(send_with_id, err)  # logged above


async def _answer(send, err: APIError, request_id: str | None = None) -> None:
    """Send `err` as the whole response (and log its status and code, no text, when `request_id` is given)."""
    if request_id:
        log.warning("request %s -> %d %s", request_id, err.status, err.code or err.type)
    body = json.dumps(err.body(), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
