"""Chat completions over the turn pipeline (ming/respond.py), testable without HTTP.

`ChatService.prepare` checks a request and turns it into a `Turn` (fitted prompt, decoding settings)
or an APIError; `complete` / `sse` answer it and shape OpenAI responses. Every stage's metadata goes out
as a `ming_<stage>` field (`ming_safety`, …). The request queue in front of the engine is queue.py.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from ming import DISCLAIMER
from ming.engine.base import Engine, GenerationConfig
from ming.errors import MingError
from ming.respond import ContextTooLong, Pipeline, ReplyEvent, Turn, TurnResult, with_seed_offset
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
from ming.templates import check_messages

log = logging.getLogger("ming.serve")

ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class Prepared:
    request_id: str
    model: str
    turn: Turn
    n: int
    stream: bool
    include_usage: bool
    ming: dict = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))


class ChatService:
    def __init__(self, engine: Engine, settings, pipeline: Pipeline):
        self.engine = engine
        self.settings = settings
        self.pipeline = pipeline
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
        messages = self.normalise_messages(req)
        mode = req.mode or self.settings.mode
        ctx = int(self.engine.context_length)
        asked = req.max_tokens if req.max_tokens is not None else req.max_completion_tokens
        if asked is not None and asked >= ctx:
            raise bad_request(f"max_tokens is {asked}, but this model's context window is {ctx} tokens (prompt and "
                              f"answer together); ask for fewer than {ctx} tokens", param="max_tokens",
                              code="max_tokens_too_large")
        d = self.defaults
        gen = d.replace(
            max_new_tokens=asked if asked is not None else d.max_new_tokens,
            temperature=d.temperature if req.temperature is None else req.temperature,
            top_p=d.top_p if req.top_p is None else req.top_p,
            top_k=d.top_k if req.top_k is None else req.top_k,
            repetition_penalty=d.repetition_penalty if req.repetition_penalty is None else req.repetition_penalty,
            seed=req.seed if req.seed is not None else d.seed,
            stop=tuple(d.stop) + tuple(req.stop_list()),
        )
        try:
            gen.validate()
            turn = self.pipeline.prepare(messages, gen, mode=mode, truncate=req.truncate,
                                         exact_max_new=asked is not None)
        except ContextTooLong as exc:
            hint = ("" if exc.truncated else ". Shorten the messages, lower max_tokens, or send \"truncate\": true to "
                    "drop the oldest exchanges")
            after = "after dropping every earlier exchange and shortening the pasted report, " if exc.truncated else ""
            raise bad_request(f"this model's context window is {ctx} tokens; the prompt is {exc.prompt_tokens} tokens "
                              f"{after}and {exc.reserve} are kept for the answer "
                              f"({'max_tokens' if asked is not None else 'at least'}){hint}",
                              param="messages", code="context_length_exceeded") from None
        except MingError as exc:
            raise bad_request(str(exc)) from None

        warnings = list(turn.notices.values())
        features = getattr(self.engine, "features", frozenset())
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
        if req.n > 1 and gen.seed is not None:
            warnings.append(f"n={req.n}: choice i is generated with seed + i")
        if req.n > 1 and "batching" not in features:
            warnings.append(f"n={req.n}: this engine answers one sequence at a time, so the choices are generated "
                            "one after another")
        ignored = sorted((req.model_extra or {}).keys())
        if ignored:  # names may be anything (a patient's name, a forged log line): the count, names with --log-requests
            log.info("request %s: ignored %d unknown field(s)%s", rid, len(ignored),
                     f" {json.dumps(ignored, ensure_ascii=False)}" if self.settings.log_requests else "")
        if unsupported:
            warnings.append("not supported by this server, ignored: " + ", ".join(unsupported))
        info = {"disclaimer": DISCLAIMER, "mode": mode, "system_prompt": turn.system_source,
                "backend": self.engine.backend, "context_length": ctx, "truncated_exchanges": turn.dropped,
                "shortened_report_items": turn.shortened, "unsupported": unsupported, "ignored": ignored,
                "warnings": warnings}
        return Prepared(rid, self.model_name, turn, req.n, req.stream,
                        bool(req.stream_options and req.stream_options.include_usage), info)

    # -- answering ------------------------------------------------------------------------------------
    def stream_events(self, p: Prepared, cancel: threading.Event | None = None) -> Iterator[tuple[int, ReplyEvent]]:
        """(choice index, ReplyEvent) of every choice: together when the engine batches (events interleave, as
        OpenAI streams them), else one choice after another."""
        if p.n > 1 and "batching" in getattr(self.engine, "features", frozenset()):
            yield from self._together(p, cancel)
            return
        for i in range(p.n):
            if cancel is not None and cancel.is_set():
                return
            for ev in self.pipeline.stream(with_seed_offset(p.turn, i), cancel):
                yield i, ev

    def _together(self, p: Prepared, cancel: threading.Event | None) -> Iterator[tuple[int, ReplyEvent]]:
        """Each choice's pipeline in its own thread, so the batching engine decodes them in the same steps.
        When the caller stops reading (a disconnect closes this generator) or `cancel` is set, every choice is
        cancelled at its next step."""
        stop = threading.Event()
        events: queue.Queue = queue.Queue()
        end = object()

        def run(i: int) -> None:
            try:
                for ev in self.pipeline.stream(with_seed_offset(p.turn, i), stop):
                    events.put((i, ev))
            except BaseException as exc:  # noqa: BLE001 - raised in the reading thread
                events.put((i, exc))
            finally:
                events.put((i, end))

        workers = [threading.Thread(target=run, args=(i,), name=f"ming-choice-{i}", daemon=True)
                   for i in range(p.n)]
        for w in workers:
            w.start()
        running, error = p.n, None
        try:
            while running:
                if cancel is not None and cancel.is_set():
                    stop.set()
                try:
                    i, ev = events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if ev is end:
                    running -= 1
                elif isinstance(ev, BaseException):
                    error = error or ev
                    stop.set()
                elif error is None:
                    yield i, ev
            if error is not None:
                raise error
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=30)

    def _log_done(self, p: Prepared, t0: float, tally: "_Tally", texts: list[str]):
        first = tally.first
        rules = ",".join(first.safety.rule_ids) if first is not None and first.safety is not None else ""
        usage = tally.usage()
        log.info("request %s: %d message(s), prompt %d tok, completion %d tok, %.2f s, finish %s, safety %s",
                 p.request_id, len(p.turn.conversation), usage.prompt_tokens, usage.completion_tokens,
                 time.monotonic() - t0, "/".join(tally.finishes) or "-", rules or "-")
        if self.settings.log_requests:
            log.info("request %s messages: %s", p.request_id, json.dumps(p.turn.conversation, ensure_ascii=False))
            for i, t in enumerate(texts):
                log.info("request %s answer[%d]: %s", p.request_id, i, t)

    def complete(self, p: Prepared, cancel: threading.Event | None = None) -> dict:
        t0 = time.monotonic()
        texts = ["" for _ in range(p.n)]
        choices: list[Choice] = []
        tally = _Tally(len(p.turn.prompt_ids))
        for i, ev in self.stream_events(p, cancel):
            if ev.kind in ("text", "added"):
                texts[i] += ev.text
            elif ev.kind == "done":
                r = tally.done(i, ev.result)
                choices.append(Choice(index=i, message=ResponseMessage(content=r.text or texts[i]),
                                      finish_reason=r.openai_finish, **meta_fields(r)))
        choices.sort(key=lambda c: c.index)
        self._log_done(p, t0, tally, texts)
        ming = dict(p.ming)
        if cancel is not None and cancel.is_set():
            ming["cancelled"] = True
        top = meta_fields(tally.first) if tally.first is not None else {}
        return ChatCompletion(id=p.request_id, created=p.created, model=p.model, choices=choices, usage=tally.usage(),
                              ming=ming, **top).model_dump(exclude_none=False)

    def sse(self, p: Prepared, cancel: threading.Event | None = None) -> Iterator[str]:
        """The answer as server-sent events, ending with `data: [DONE]`."""
        t0 = time.monotonic()

        def chunk(choices, **kw) -> str:
            c = ChatCompletionChunk(id=p.request_id, created=p.created, model=p.model, choices=choices, **kw)
            return "data: " + c.model_dump_json(exclude_none=True) + "\n\n"

        tally = _Tally(len(p.turn.prompt_ids))
        texts = ["" for _ in range(p.n)]
        started: set[int] = set()
        yield chunk([ChunkChoice(index=0, delta=DeltaMessage(role="assistant", content=""))], ming=p.ming)
        started.add(0)
        for i, ev in self.stream_events(p, cancel):
            if i not in started:
                started.add(i)
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
            if ev.kind in ("text", "added"):
                if ev.text:
                    texts[i] += ev.text
                    yield chunk([ChunkChoice(index=i, delta=DeltaMessage(content=ev.text),
                                             ming_kind=ev.stage if ev.kind == "added" else None)])
            elif ev.kind == "done":
                r = tally.done(i, ev.result)
                meta = meta_fields(r)
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(), finish_reason=r.openai_finish, **meta)], **meta)
        self._log_done(p, t0, tally, texts)
        if p.include_usage:
            yield chunk([], usage=tally.usage())
        yield "data: [DONE]\n\n"


def meta_fields(r: TurnResult) -> dict[str, Any]:
    """Each stage's metadata as a response field: `ming_safety`, `ming_consult`, …"""
    return {f"ming_{name}": value for name, value in r.meta.items()}


class _Tally:
    """Usage and finish reasons over the n choices of one request; the first choice's result."""

    def __init__(self, prompt_tokens: int):
        self._usage = Usage(prompt_tokens=prompt_tokens)
        self._cached = 0
        self.finishes: list[str] = []
        self.first: TurnResult | None = None

    def done(self, index: int, r: TurnResult) -> TurnResult:
        self.finishes.append(r.finish)
        self._usage.completion_tokens += r.completion_tokens
        if r.prompt_tokens:
            self._usage.prompt_tokens = r.prompt_tokens
        self._cached = max(self._cached, r.cached_tokens)
        if index == 0:
            self.first = r
        return r

    def usage(self) -> Usage:
        u = self._usage
        u.total_tokens = u.prompt_tokens + u.completion_tokens
        if self._cached:
            u.prompt_tokens_details = {"cached_tokens": self._cached}
        return u
