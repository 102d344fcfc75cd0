"""Who answers the evaluation: a local engine (through `ming.respond.Pipeline`, the same turn as
`ming chat` and `ming serve`: stages, fitting, safety) or any OpenAI-compatible HTTP endpoint
(`ming serve`, vLLM, another vendor), with bounded retries."""

from __future__ import annotations

import contextlib

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

from ming.errors import MingError
from ming.respond import Pipeline
from ming.stages import build, stage_options


@dataclass
class Reply:
    text: str  # what a user would see (safety-layer text included)
    model_text: str = ""  # what the model itself said
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    safety: dict | None = None  # the safety decision when the layer acted (local engine only)
    info: dict = field(default_factory=dict)  # local engine: each stage's metadata (TurnResult.meta)


class LocalClient:
    """A loaded `ming.engine.Engine`. One call at a time (the engine's lock), unless the engine batches
    (llama.cpp with max_batch > 1): then calls run together."""

    kind = "local"
    stops_early = True  # chat(..., until=) can stop generation once the caller has what it needs

    def __init__(self, engine, safety: str = "on", off: Sequence[str] | str = (), retrieval: bool = False,
                 stages: list | None = None):
        """`stages`: already built (`ming.stages.build`); else built from safety / off / retrieval."""
        self.engine = engine
        self.safety = safety
        self.off = sorted(n.strip() for n in (off.split(",") if isinstance(off, str) else off) if n.strip())
        if stages is None:
            stages = build(stage_options(safety, retrieval=retrieval, stages_off=self.off))
        self.pipeline = Pipeline(engine, stages, mode=None)

    @property
    def batching(self) -> bool:
        return "batching" in getattr(self.engine, "features", ())

    def _turn_lock(self):
        return contextlib.nullcontext() if self.batching else self.engine.lock

    @property
    def can_loglik(self) -> bool:
        return "loglik" in getattr(self.engine, "features", ())

    def describe(self) -> dict:
        e = self.engine
        return {"kind": "local", "name": e.name, "backend": e.backend, "template": e.template.name,
                "context_length": e.context_length, "safety": self.safety, "stages_off": self.off,
                "stages": [s.name for s in self.pipeline.stages]}

    def chat(self, messages: Sequence[dict], gen, until=None, mode: str | None = None) -> Reply:
        """One reply. `until(text so far)` returning True stops generation there (finish_reason "answered").
        `mode` "consult": the turn runs the consultation controller (the "consult" stage)."""
        with self._turn_lock():
            r = self.pipeline.answer(self.pipeline.prepare(list(messages), gen, mode=mode), until=until)
        acted = r.safety is not None and r.safety.triggered
        return Reply(text=r.text, model_text=r.model_text, finish_reason=r.finish, prompt_tokens=r.prompt_tokens,
                     completion_tokens=r.completion_tokens, safety=r.meta["safety"] if acted else None, info=r.meta)

    # -- log-likelihood scoring ---------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.engine.template.encode_text(text)  # plain text: a control token in an item stays text

    def continuation_ids(self, prefix: str, continuation: str) -> list[int]:
        """Token ids of `continuation` as they follow `prefix` (tokenized together, so a merge across
        the boundary is respected when the prefix's own tokens are unchanged)."""
        a, ab = self.encode(prefix), self.encode(prefix + continuation)
        if ab[:len(a)] == a and len(ab) > len(a):
            return ab[len(a):]
        return self.encode(continuation)

    def option_logprobs(self, context_ids: Sequence[int], continuations: dict[str, list[int]]) -> dict[str, float]:
        """Sum log-probability of each continuation after the context (`Engine.score_continuations`)."""
        with self.engine.lock:
            return self.engine.score_continuations(context_ids, continuations)


class OpenAIClient:
    """POST /v1/chat/completions. Retries connection errors, 429 and 5xx up to `retries` times with
    exponential backoff; other HTTP errors fail at once with the server's message."""

    kind = "http"

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, retries: int = 3, backoff: float = 1.0):
        import httpx

        url = base_url.rstrip("/")
        if url.endswith("/chat/completions"):
            url = url[: -len("/chat/completions")]
        if not url.endswith("/v1"):
            url += "/v1"
        self.base_url = url
        self.model = model
        self.retries = max(0, retries)
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=timeout, headers=headers)
        self.calls = 0
        self.retried = 0
        self.safety = "server"
        if self.model is None:
            self.model = self._first_model()

    can_loglik = False

    def _first_model(self) -> str:
        try:
            data = self._request("GET", "/models")
            return data["data"][0]["id"]
        except (MingError, KeyError, IndexError, TypeError) as exc:
            raise MingError(f"--api-model was not given and {self.base_url}/models did not name a model ({exc}); "
                            "pass --api-model NAME") from exc

    def describe(self) -> dict:
        return {"kind": "http", "name": self.model, "base_url": self.base_url, "backend": "openai-compatible",
                "safety": "applied by the server, if it has one"}

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = self.http.request(method, self.base_url + path, json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise MingError(f"{self.base_url}{path} answered HTTP {r.status_code}: {r.text[:300]}")
            try:
                return r.json()
            except json.JSONDecodeError:
                last = f"response is not JSON: {r.text[:200]!r}"
                continue
        raise MingError(f"{self.base_url}{path} failed after {self.retries + 1} attempts; last error: {last}. "
                        "Is the server running? (`ming serve` prints its URL)")

    def chat(self, messages: Sequence[dict], gen, mode: str | None = None) -> Reply:
        """`mode` is not sent (a vendor's API may reject unknown fields): a `ming serve` started with
        `--mode consult` runs its own consultation controller."""
        body = {"model": self.model, "messages": list(messages), "max_tokens": gen.max_new_tokens,
                "temperature": gen.temperature, "top_p": gen.top_p, "stream": False}
        if gen.seed is not None:
            body["seed"] = gen.seed
        if gen.stop:
            body["stop"] = list(gen.stop)
        self.calls += 1
        data = self._request("POST", "/chat/completions", body)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise MingError(f"{self.base_url}/chat/completions returned no choices[0].message.content: "
                            f"{str(data)[:200]}") from exc
        usage = data.get("usage") or {}
        return Reply(text=text, model_text=text, finish_reason=choice.get("finish_reason") or "stop",
                     prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0))


def notice(msg: str) -> None:
    print(f"[ming eval] {msg}", file=sys.stderr, flush=True)
