"""HTTP endpoints over serving.py: OpenAI's /v1/chat/completions and /v1/models, /health, and the web
page at /. Everything they need is on `request.app.state` (settings, engine, service, scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from importlib import resources

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from ming import DISCLAIMER
from ming.errors import MingError
from ming.serve.errors import APIError, from_validation_errors
from ming.serve.protocol import ChatCompletionRequest, ModelCard, ModelList
from ming.serve.queue import Job

log = logging.getLogger("ming.serve")
router = APIRouter()

MAX_JSON_DEPTH = 32  # a chat request is 5 levels deep (body, messages, message, content parts, part)


def auth_error(key: str | None, authorization: str) -> APIError | None:
    """The 401 for an `Authorization` header that does not carry `key` (None when it does, or no key is set)."""
    if not key:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return APIError(401, "missing API key: send the header `Authorization: Bearer KEY` (the server runs with "
                             "--api-key)", code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.strip().encode(), key.encode()):
        return APIError(401, "incorrect API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    return None


def check_auth(request: Request) -> None:
    err = auth_error(request.app.state.settings.api_key, request.headers.get("authorization", ""))
    if err is not None:
        raise err


def _model_card(app) -> ModelCard:
    engine = app.state.engine
    return ModelCard(id=app.state.service.model_name,
                     ming={"backend": engine.backend, "context_length": int(engine.context_length),
                           "template": engine.template.name, "modes": ["qa", "consult"]})


@router.get("/health")
async def health(request: Request):
    app = request.app
    return {"status": "ok", "model": app.state.service.model_name, "backend": app.state.engine.backend,
            "safety": app.state.settings.safety, "mode": app.state.settings.mode,
            "auth_required": bool(app.state.settings.api_key), "disclaimer": DISCLAIMER,
            "queue": app.state.scheduler.stats(), "batch": _batch_stats(app.state.engine)}


def _batch_stats(engine) -> dict:
    stats = getattr(engine, "batch_stats", None)
    return stats() if stats is not None else {}


@router.get("/v1/models", dependencies=[Depends(check_auth)])
async def list_models(request: Request):
    return ModelList(data=[_model_card(request.app)]).model_dump()


@router.get("/v1/models/{model_id:path}", dependencies=[Depends(check_auth)])
async def get_model(model_id: str, request: Request):
    card = _model_card(request.app)
    if model_id != card.id:
        raise APIError(404, f"model {model_id!r} is not served here; this server serves {card.id!r}",
                       param="model", code="model_not_found")
    return card.model_dump()


def _job_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, MingError):
        return APIError(500, f"the answer failed: {exc}", code="generation_failed")
    log.error("generation failed: %s", type(exc).__name__)
    return APIError(500, f"the answer failed ({type(exc).__name__})", code="generation_failed")


async def parse_request(request: Request) -> ChatCompletionRequest:
    """The body as a ChatCompletionRequest, whatever Content-Type the client sent; 400 when it is not
    JSON or not a valid request."""
    from pydantic import ValidationError

    raw = await request.body()
    if not raw.strip():
        raise APIError(400, "the request has no body; send a JSON object like "
                            "{\"messages\": [{\"role\": \"user\", \"content\": \"…\"}]}", code="invalid_json")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({_json_problem(exc, raw)}); send a JSON object "
                            "like {\"messages\": [{\"role\": \"user\", \"content\": \"…\"}]}",
                       code="invalid_json") from None
    except RecursionError:
        raise _too_deep() from None
    check_json(data)
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, got a JSON {type(data).__name__}",
                       code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise from_validation_errors(exc.errors()) from None


def _json_problem(exc: ValueError, raw: bytes) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
    what = exc.msg.removesuffix(" at")  # "Invalid control character at" is followed by the position
    if exc.pos >= len(raw.rstrip()) or what.startswith("Unterminated"):
        what = f"truncated JSON: {what}"
    return f"{what} at line {exc.lineno} column {exc.colno}"


def check_json(data) -> None:
    """400 for JSON no request needs: nested deeper than MAX_JSON_DEPTH, or text that is not Unicode (lone
    surrogates such as "\\ud800", in values or field names)."""
    stack = [(data, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            for k, v in value.items():
                _check_text(k, f"a field name in {where or 'the body'}")
                stack.append((v, depth + 1, f"{where}.{k}" if where else k))
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{where}.{i}" if where else str(i)) for i, v in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)


def check_length(req: ChatCompletionRequest, app) -> None:
    """400 without tokenizing when the text is longer than any tokenization could fit in the context
    window: no token covers more characters than the longest entry of the vocabulary."""
    per_token = app.state.max_token_chars
    if not per_token:
        return
    ctx = int(app.state.engine.context_length)
    messages = req.messages[-1:] if req.truncate else req.messages  # truncation may drop the others
    chars = sum(len(m.content) if isinstance(m.content, str) else sum(len(p.text or "") for p in m.content)
                for m in messages if m.content)
    if chars > per_token * ctx:
        raise APIError(400, f"the messages are {chars} characters, at least {chars // per_token} tokens: more than "
                            f"this model's context window of {ctx} tokens; shorten them", param="messages",
                       code="context_length_exceeded")


def max_token_chars(engine) -> int:
    """The most characters one token of `engine` can stand for (0 when its vocabulary is not known)."""
    tok = getattr(getattr(engine, "template", None), "tokenizer", None)
    vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
    return max(map(len, vocab), default=0)


def _too_deep() -> APIError:
    return APIError(400, f"the request body is nested more than {MAX_JSON_DEPTH} levels deep; a chat request needs "
                         "five", code="invalid_json")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = where if where.isprintable() and len(where) <= 80 else "a field"  # names may be anything
        raise APIError(400, f"{where} is not valid Unicode text: it contains the lone surrogate "
                            f"\\u{ord(text[exc.start]):04x} at character {exc.start}; send UTF-8 text",
                       param=where, code="invalid_text") from None


@router.post("/v1/chat/completions", dependencies=[Depends(check_auth)])
async def chat_completions(request: Request):
    """OpenAI chat completions (the body is ming.serve.protocol.ChatCompletionRequest, parsed by hand so
    that malformed JSON of any Content-Type gets an OpenAI-format 400)."""
    body = await parse_request(request)
    service = request.app.state.service
    scheduler = request.app.state.scheduler
    check_length(body, request.app)
    prepared = await anyio.to_thread.run_sync(service.prepare, body, request.state.request_id)

    if prepared.stream:
        job, events = Job.for_asyncio(lambda cancel: service.sse(prepared, cancel))
        scheduler.submit(job)  # 429 with Retry-After when the queue is full

        async def stream():
            try:
                async for text in events:
                    yield text
            except Exception as exc:  # after the 200 has been sent: an error event, then the end
                yield _job_error(exc).sse()
                yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    job, events = Job.for_asyncio(lambda cancel: iter([service.complete(prepared, cancel)]))
    scheduler.submit(job)
    task = asyncio.ensure_future(events.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected():  # the client left: free the slot at the next token
                job.cancel.set()
                log.info("request %s: client disconnected", request.state.request_id)
        try:
            result = task.result()
        except StopAsyncIteration:
            raise APIError(503, "the request was cancelled", code="cancelled") from None
        except APIError:
            raise
        except Exception as exc:
            raise _job_error(exc) from None
        return JSONResponse(result)
    finally:
        job.cancel.set()  # harmless once done; stops the generation if we leave early
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await events.aclose()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index():
    return HTMLResponse(resources.files("ming.serve").joinpath("static/index.html").read_text(encoding="utf-8"))
