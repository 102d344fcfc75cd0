"""Chat-completion logic and the request queue, testable without HTTP.

`ChatService.prepare` turns a request into a fitted prompt and decoding settings (or an APIError);
`ChatService.stream_events` / `sse` / `complete` answer it through `ming.respond.reply_stream` (the
safety layer). `Scheduler` is the bounded queue in front of the engine: a fixed number of worker
threads (1 for engines that generate one sequence at a time; more for batching engines such as vLLM),
at most `max_queue` waiting requests, 429 + Retry-After beyond that, and a cancel event per job so
that a client that goes away frees its slot at the next token.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ming import DISCLAIMER
from ming.engine.base import Engine, GenerationConfig
from ming.errors import MingError
from ming.prompts import system_prompt
from ming.respond import reply_stream
from ming.serve.errors import APIError, bad_request
from ming.serve.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    DeltaMessage,
    ResponseMessage,
    Usage,
    new_id,
)
from ming.session import fit_to_context
from ming.templates import check_messages

log = logging.getLogger("ming.serve")

ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


# =============================================================================================
# Scheduler: bounded queue + worker threads in front of one engine
# =============================================================================================
_END = object()


class Job:
    """One request's work: `fn(cancel)` returns an iterator whose items are handed to `sink` (from a
    worker thread), followed by `_END`; an exception raised by `fn` is handed over as the item."""

    def __init__(self, fn: Callable[[threading.Event], Iterator[Any]], sink: Callable[[Any], None]):
        self.fn = fn
        self.sink = sink
        self.cancel = threading.Event()
        self.enqueued = time.monotonic()
        self.started: float | None = None

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            for item in self.fn(self.cancel):
                self._put(item)
        except BaseException as exc:  # handed to the waiting request, which answers with an error
            self._put(exc)
        finally:
            self._put(_END)

    def _put(self, item) -> None:
        try:
            self.sink(item)
        except RuntimeError:  # the event loop is gone (server shutting down): stop generating
            self.cancel.set()

    # -- consumers ---------------------------------------------------------------------------
    @classmethod
    def threaded(cls, fn) -> tuple["Job", Callable[[float | None], Iterator[Any]]]:
        """A job consumed by a plain thread: returns (job, iterate(timeout))."""
        import queue

        q: queue.Queue = queue.Queue()
        job = cls(fn, q.put)

        def iterate(timeout: float | None = 60.0):
            while True:
                item = q.get(timeout=timeout)
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        return job, iterate

    @classmethod
    def for_asyncio(cls, fn):
        """A job consumed by asyncio code: returns (job, async iterator). Leaving the iterator early
        (client disconnected, task cancelled) cancels the job."""
        import asyncio

        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        job = cls(fn, lambda item: loop.call_soon_threadsafe(q.put_nowait, item))

        async def iterate():
            try:
                while True:
                    item = await q.get()
                    if item is _END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                job.cancel.set()

        return job, iterate()


class Scheduler:
    """At most `workers` jobs run at once (each holding the engine for its generation unless the
    engine batches), at most `max_queue` wait. `submit` never blocks: when full it raises a 429."""

    def __init__(self, engine: Engine, max_queue: int = 16, workers: int | None = None):
        self.engine = engine
        batching = "batching" in getattr(engine, "features", frozenset())
        self.workers = workers or (int(getattr(engine, "max_concurrency", 1)) if batching else 1)
        self.serialise = not batching
        self.max_queue = max_queue
        self._pending: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._cv = threading.Condition()
        self._closing = False
        self._avg_seconds = 5.0  # running mean of job durations, for Retry-After
        self.completed = 0
        self.rejected = 0
        self._threads = [threading.Thread(target=self._work, name=f"ming-serve-worker-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    # -- admission -------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        with self._cv:
            if self._closing:
                raise APIError(503, "the server is shutting down; retry on another instance",
                               code="shutting_down", headers={"Retry-After": "5"})
            if len(self._pending) + len(self._running) >= self.workers + self.max_queue:
                self.rejected += 1
                ra = max(1, min(600, math.ceil(self._avg_seconds * (len(self._pending) + 1))))
                raise APIError(429, f"the server is busy: {len(self._running)} request(s) running and "
                                    f"{len(self._pending)} waiting (queue limit {self.max_queue}); retry in {ra} s",
                               code="queue_full", headers={"Retry-After": str(ra)})
            self._pending.append(job)
            self._cv.notify()
        return job

    def stats(self) -> dict:
        with self._cv:
            return {"running": len(self._running), "waiting": len(self._pending), "max_queue": self.max_queue,
                    "workers": self.workers, "completed": self.completed, "rejected": self.rejected}

    # -- work --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    self._cv.wait()
                if not self._pending:  # closing and nothing left
                    return
                job = self._pending.popleft()
                self._running.add(job)
            try:
                if job.cancel.is_set():  # the client left (or the server is stopping) while it waited
                    job._put(APIError(503, "the request was cancelled before it started (the server is shutting "
                                           "down or the client left); retry", code="cancelled",
                                      headers={"Retry-After": "5"}))
                    job._put(_END)
                    continue
                lock = self.engine.lock if self.serialise else contextlib.nullcontext()
                with lock:
                    job.run()
                took = time.monotonic() - (job.started or time.monotonic())
                self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * max(0.05, took)
            finally:
                with self._cv:
                    self._running.discard(job)
                    self.completed += 1
                    self._cv.notify_all()

    def idle(self) -> bool:
        with self._cv:
            return not self._pending and not self._running

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def cancel_all(self) -> int:
        """Cancel every running and waiting job (server shutdown)."""
        with self._cv:
            jobs = list(self._pending) + list(self._running)
        for j in jobs:
            j.cancel.set()
        return len(jobs)

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if not self.wait_idle(timeout):
            self.cancel_all()
            self.wait_idle(timeout)
        for t in self._threads:
            t.join(timeout=1.0)


# =============================================================================================
# ChatService: request -> prompt -> reply events -> OpenAI responses
# =============================================================================================
@dataclass
class Prepared:
    request_id: str
    model: str
    messages: list[dict]
    prompt_ids: list[int]
    gen: GenerationConfig
    n: int
    stream: bool
    include_usage: bool
    ming: dict = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))


class ChatService:
    def __init__(self, engine: Engine, settings, policy=None):
        self.engine = engine
        self.settings = settings
        self.policy = policy
        self.defaults: GenerationConfig = settings.generation or GenerationConfig()
        self.model_name = settings.served_model_name or engine.name

    # -- request -> prompt ---------------------------------------------------------------------------
    def normalise_messages(self, req: ChatCompletionRequest) -> list[dict]:
        out: list[dict] = []
        for i, m in enumerate(req.messages):
            role = ROLE_ALIASES.get(m.role)
            if role is None:
                raise bad_request(f"messages[{i}].role is {m.role!r}: this server accepts the roles system, user and "
                                  "assistant (tool and function messages are not supported)",
                                  param=f"messages[{i}].role", code="invalid_role")
            content = m.content
            if isinstance(content, list):
                texts = []
                for j, part in enumerate(content):
                    if part.type != "text" or part.text is None:
                        raise bad_request(f"messages[{i}].content[{j}] is of type {part.type!r}: only text content is "
                                          "supported", param=f"messages[{i}].content", code="unsupported_content")
                    texts.append(part.text)
                content = "".join(texts)
            if content is None:
                if role != "assistant":
                    raise bad_request(f"messages[{i}] ({role}) has no content", param=f"messages[{i}].content",
                                      code="empty_message")
                content = ""
            out.append({"role": role, "content": content})
        # several leading system messages (e.g. system + developer) become one
        while len(out) > 1 and out[0]["role"] == "system" and out[1]["role"] == "system":
            out[0:2] = [{"role": "system", "content": out[0]["content"] + "\n\n" + out[1]["content"]}]
        if out[-1]["role"] != "user":
            raise bad_request(f"the last message must come from the user (found {out[-1]['role']!r}): the server "
                              "answers the last user message", param="messages", code="invalid_messages")
        if not out[-1]["content"].strip():
            raise bad_request("the last user message is empty; send the question in its content",
                              param=f"messages[{len(out) - 1}].content", code="empty_message")
        try:
            return check_messages(out)
        except MingError as exc:
            raise bad_request(str(exc), param="messages", code="invalid_messages") from None

    def prepare(self, req: ChatCompletionRequest, request_id: str | None = None) -> Prepared:
        rid = request_id or new_id()
        warnings: list[str] = []
        messages = self.normalise_messages(req)
        mode = req.mode or self.settings.mode
        if messages[0]["role"] == "system":
            system_source = "client"
        else:
            sp = system_prompt(mode, None, self.engine.template.default_system)
            if sp:
                messages = [{"role": "system", "content": sp}] + messages
            system_source = f"ming:{mode}"

        ctx = int(self.engine.context_length)
        asked = req.max_tokens if req.max_tokens is not None else req.max_completion_tokens
        if asked is not None and asked >= ctx:
            raise bad_request(f"max_tokens is {asked}, but this model's context window is {ctx} tokens (prompt and "
                              f"answer together); ask for fewer than {ctx} tokens", param="max_tokens",
                              code="max_tokens_too_large")
        reserve = asked if asked is not None else min(self.defaults.max_new_tokens, max(1, ctx // 4))
        rendered = self.engine.render(messages)
        prompt_ids = list(rendered.ids)
        dropped = 0
        if len(prompt_ids) + reserve > ctx:
            if not req.truncate:
                raise bad_request(
                    f"this model's context window is {ctx} tokens; the messages are {len(prompt_ids)} tokens and "
                    f"{reserve} are reserved for the answer ({'max_tokens' if asked is not None else 'default'}). "
                    "Shorten the messages, lower max_tokens, or send \"truncate\": true to drop the oldest exchanges",
                    param="messages", code="context_length_exceeded")
            try:
                messages, dropped, _ = fit_to_context(self.engine.template, messages, ctx - reserve)
            except MingError as exc:
                raise bad_request(f"{exc} (context window {ctx} tokens)", param="messages",
                                  code="context_length_exceeded") from None
            prompt_ids = list(self.engine.render(messages).ids)
            warnings.append(f"the conversation was longer than the {ctx}-token context window: the oldest {dropped} "
                            "exchange(s) were dropped")
        max_new = asked if asked is not None else min(self.defaults.max_new_tokens, ctx - len(prompt_ids))

        features = getattr(self.engine, "features", frozenset())
        gen = self.defaults.replace(
            max_new_tokens=max(1, max_new),
            temperature=self.defaults.temperature if req.temperature is None else req.temperature,
            top_p=self.defaults.top_p if req.top_p is None else req.top_p,
            top_k=self.defaults.top_k if req.top_k is None else req.top_k,
            repetition_penalty=self.defaults.repetition_penalty if req.repetition_penalty is None
            else req.repetition_penalty,
            seed=req.seed if req.seed is not None else self.defaults.seed,
            stop=tuple(self.defaults.stop) + tuple(req.stop_list()),
        )
        try:
            gen.validate()
        except MingError as exc:
            raise bad_request(str(exc)) from None
        unsupported = req.unsupported()
        if req.seed is not None and "seed" not in features:
            unsupported.append("seed")
        if req.top_k and "top_k" not in features:
            unsupported.append("top_k")
        if req.repetition_penalty not in (None, 1.0) and "repetition_penalty" not in features:
            unsupported.append("repetition_penalty")
        if gen.num_beams > 1 and (req.temperature or req.top_p):
            warnings.append(f"the server decodes with beam search ({gen.num_beams} beams): temperature and top_p "
                            "are ignored")
        if req.n > 1:
            warnings.append(f"n={req.n}: the choices are generated one after another"
                            + (" (with seed, seed+1, …)" if gen.seed is not None else ""))
        ignored = sorted((req.model_extra or {}).keys())
        if ignored:
            log.info("request %s: ignored unknown fields %s", rid, ", ".join(ignored))
        if unsupported:
            warnings.append("not supported by this server, ignored: " + ", ".join(unsupported))
        info = {"disclaimer": DISCLAIMER, "mode": mode, "system_prompt": system_source, "backend": self.engine.backend,
                "context_length": ctx, "truncated_exchanges": dropped, "unsupported": unsupported,
                "ignored": ignored, "warnings": warnings}
        return Prepared(rid, self.model_name, messages, prompt_ids, gen, req.n, req.stream,
                        bool(req.stream_options and req.stream_options.include_usage), info)

    # -- answering ------------------------------------------------------------------------------------
    def stream_events(self, p: Prepared, cancel: threading.Event | None = None) -> Iterator[tuple[int, Any]]:
        """(choice index, ReplyEvent) for each choice in turn, through the safety layer."""

        for i in range(p.n):
            if cancel is not None and cancel.is_set():
                return
            gen = p.gen if (i == 0 or p.gen.seed is None) else p.gen.replace(seed=p.gen.seed + i)
            for ev in reply_stream(self.engine, p.messages, gen, self.policy, cancel, prompt_ids=p.prompt_ids):
                yield i, ev

    def _log_done(self, p: Prepared, t0: float, usage: Usage, finishes: list[str], decision, texts: list[str]):
        rules = ",".join(t.get("rule_id", "?") for t in _triggered(decision)) or "-"
        log.info("request %s: %d message(s), prompt %d tok, completion %d tok, %.2f s, finish %s, safety %s",
                 p.request_id, len(p.messages), usage.prompt_tokens, usage.completion_tokens, time.monotonic() - t0,
                 "/".join(finishes) or "-", rules)
        if self.settings.log_requests:
            log.info("request %s messages: %s", p.request_id, json.dumps(p.messages, ensure_ascii=False))
            for i, t in enumerate(texts):
                log.info("request %s answer[%d]: %s", p.request_id, i, t)

    def complete(self, p: Prepared, cancel: threading.Event | None = None) -> dict:
        t0 = time.monotonic()
        texts = ["" for _ in range(p.n)]
        choices: list[Choice] = []
        tally = _Tally(len(p.prompt_ids))
        for i, ev in self.stream_events(p, cancel):
            if ev.kind in ("text", "safety"):
                texts[i] += ev.text
            elif ev.kind == "done":
                fin, sd = tally.done(i, ev)
                choices.append(Choice(index=i, message=ResponseMessage(content=ev.full_text or texts[i]),
                                      finish_reason=fin, ming_safety=sd))
        usage = tally.usage()
        first_decision = tally.first_decision
        self._log_done(p, t0, usage, tally.finishes, first_decision, texts)
        ming = dict(p.ming)
        if cancel is not None and cancel.is_set():
            ming["cancelled"] = True
        return ChatCompletion(id=p.request_id, created=p.created, model=p.model, choices=choices, usage=usage,
                              ming_safety=_decision_dict(first_decision), ming=ming).model_dump(exclude_none=False)

    def sse(self, p: Prepared, cancel: threading.Event | None = None) -> Iterator[str]:
        """The answer as server-sent events, ending with `data: [DONE]`."""
        t0 = time.monotonic()

        def chunk(choices, **kw) -> str:
            c = ChatCompletionChunk(id=p.request_id, created=p.created, model=p.model, choices=choices, **kw)
            return "data: " + c.model_dump_json(exclude_none=True) + "\n\n"

        tally = _Tally(len(p.prompt_ids))
        texts = ["" for _ in range(p.n)]
        started: set[int] = set()
        yield chunk([ChunkChoice(index=0, delta=DeltaMessage(role="assistant", content=""))], ming=p.ming)
        started.add(0)
        for i, ev in self.stream_events(p, cancel):
            if i not in started:
                started.add(i)
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            if ev.kind in ("text", "safety"):
                if ev.text:
                    texts[i] += ev.text
                    yield chunk([ChunkChoice(index=i, delta=DeltaMessage(content=ev.text),
                                             ming_kind="safety" if ev.kind == "safety" else None)])
            elif ev.kind == "done":
                fin, sd = tally.done(i, ev)
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(), finish_reason=fin, ming_safety=sd)],
                            ming_safety=sd)
        usage = tally.usage()
        first_decision = tally.first_decision
        self._log_done(p, t0, usage, tally.finishes, first_decision, texts)
        if p.include_usage:
            yield chunk([], usage=usage)
        yield "data: [DONE]\n\n"


class _Tally:
    """Usage, finish reasons and the first safety decision over the n choices of one request."""

    def __init__(self, prompt_tokens: int):
        self._usage = Usage(prompt_tokens=prompt_tokens)
        self._cached = 0
        self.finishes: list[str] = []
        self.first_decision = None

    def done(self, index: int, ev) -> tuple[str, dict | None]:
        fin = _finish(ev.chunk)
        self.finishes.append(fin)
        if ev.chunk is not None:
            self._usage.completion_tokens += ev.chunk.completion_tokens
            if ev.chunk.prompt_tokens:
                self._usage.prompt_tokens = ev.chunk.prompt_tokens
            self._cached = max(self._cached, ev.chunk.cached_tokens)
        if index == 0:
            self.first_decision = ev.decision
        return fin, _decision_dict(ev.decision)

    def usage(self) -> Usage:
        u = self._usage
        u.total_tokens = u.prompt_tokens + u.completion_tokens
        if self._cached:
            u.prompt_tokens_details = {"cached_tokens": self._cached}
        return u


def _finish(chunk) -> str:
    fr = getattr(chunk, "finish_reason", None) or "stop"
    return "stop" if fr == "cancelled" else fr


def _triggered(decision) -> list[dict]:
    if decision is None:
        return []
    out = []
    for t in getattr(decision, "triggered", None) or []:
        out.append(t if isinstance(t, dict) else {"rule_id": str(getattr(t, "rule_id", getattr(t, "id", t)))})
    return out


def _decision_dict(decision) -> dict | None:
    if decision is None:
        return None
    if hasattr(decision, "to_dict"):
        return decision.to_dict()
    return {"action": getattr(decision, "action", None), "triggered": _triggered(decision)}
