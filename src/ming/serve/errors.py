"""Errors in OpenAI's format: `{"error": {"message", "type", "param", "code"}}` with the right status.

Error bodies go to the client that sent the request; logs only get the status, type and code (the
message may quote the request, i.e. patient text), unless the server runs with --log-requests."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("ming.serve")

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def sse(self) -> str:
        """The error as one server-sent event (for errors after a stream has started)."""
        return "data: " + json.dumps(self.body(), ensure_ascii=False) + "\n\n"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_validation_errors(errors: list[dict]) -> APIError:
    """A pydantic / FastAPI validation error list -> one 400 naming each bad field (values are not echoed)."""
    parts, first_param = [], None
    for e in errors[:8]:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        if e.get("type") == "json_invalid":
            ctx = e.get("ctx") or {}
            return APIError(400, f"the request body is not valid JSON ({ctx.get('error', 'parse error')}); send a "
                                 "JSON object like {\"messages\": [{\"role\": \"user\", \"content\": \"…\"}]}",
                            code="invalid_json")
        if e.get("type") == "missing" and where == "body":
            return APIError(400, "the request has no JSON body; send {\"messages\": [...]} with "
                                 "Content-Type: application/json", code="invalid_json")
        first_param = first_param or where
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 8} more)" if len(errors) > 8 else ""
    return APIError(400, "invalid request: " + "; ".join(parts) + more, param=first_param, code="invalid_value")


def install_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(err: APIError, request) -> JSONResponse:
        rid = getattr(request.state, "request_id", "-")
        if request.app.state.settings.log_requests:
            log.warning("request %s -> %d %s: %s", rid, err.status, err.code or err.type, err.message)
        else:
            log.warning("request %s -> %d %s", rid, err.status, err.code or err.type)
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return respond(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        return respond(from_validation_errors(list(exc.errors())), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        msg = {404: f"no route {request.url.path}; see GET /v1/models, POST /v1/chat/completions, GET /health",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code,
                                                                                          str(exc.detail))
        return respond(APIError(exc.status_code, msg, headers=dict(exc.headers or {})), request)


def internal_error(exc: BaseException, request_id: str, log_requests: bool) -> APIError:
    """A 500 for an unexpected exception: one log line naming its type (the traceback, which may quote
    patient text, only with --log-requests)."""
    log.error("request %s: internal error %s", request_id, type(exc).__name__, exc_info=exc if log_requests else None)
    return APIError(500, f"internal server error ({type(exc).__name__}); request id {request_id}")
