"""`build_app(settings, engine=None)`: the FastAPI application. All state lives on `app.state`
(settings, engine, service, scheduler); nothing is global, so tests build as many apps as they like."""

from __future__ import annotations

import contextlib
import logging
import uuid

from ming.serve.settings import ServeSettings

log = logging.getLogger("ming.serve")

MAX_BODY_BYTES = 8 * 1024 * 1024  # a request body larger than this gets a 413


def build_app(settings: ServeSettings | None = None, engine=None, policy="auto"):
    """The server for `engine` (loaded from `settings.model` when None). `policy` is the safety
    policy; "auto" loads the one `settings.safety` names (None when it is "off")."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
    from importlib import resources

    from ming.engine.base import GenerationConfig
    from ming.serve import errors, routes
    from ming.serve.serving import ChatService, Scheduler

    settings = (settings or ServeSettings()).validate()
    if settings.generation is None:
        settings.generation = GenerationConfig()
    if engine is None:
        from ming.config import ModelOptions
        from ming.engine import create_engine

        engine = create_engine(settings.model or ModelOptions(), need_beam=settings.generation.num_beams > 1)
    if policy == "auto":
        policy = load_safety(settings.safety)

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
    app.state.service = ChatService(engine, settings, policy)

    @app.middleware("http")
    async def request_id_and_size(request, call_next):
        from fastapi.responses import JSONResponse

        request.state.request_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY_BYTES):
            err = errors.APIError(413, f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB",
                                  code="body_too_large")
            return JSONResponse(err.body(), status_code=413)
        response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        return response

    errors.install_handlers(app)
    app.include_router(routes.router)
    static = resources.files("ming.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def load_safety(mode: str):
    """The safety policy for --safety MODE, or a clear error when the safety layer is unavailable."""
    from ming.errors import MingError
    from ming.respond import load_policy

    try:
        return load_policy(mode)
    except ImportError as exc:
        raise MingError(f"--safety {mode} needs the safety layer (ming.safety), which could not be loaded ({exc}); "
                        "reinstall ming, or run with --safety off to serve the model without it") from exc
