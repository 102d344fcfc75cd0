"""One turn, prepared and answered in one place for `ming chat`, `ming serve` and `ming eval`.

    pipe = Pipeline(engine, stages.build(StageOptions(safety="on")), mode="qa")
    turn = pipe.prepare(messages, gen)           # system prompt, stages, fit to the window, render once
    for ev in pipe.stream(turn, cancel):         # "added" (stage text) | "text" (model) | "done" (.result)
        ...

The turn runs these steps, in this order (docs/turn.md):

1. system prompt: the client's own system message wins, else `--system`, else the mode's prompt
   (ming/prompts.py). `Turn.system_source` says which.
2. stages (`Stage.prepare`, in the order of `ming.stages.REGISTRY`): the safety check, then the
   features that plug in later (consultation controller, grounding). A stage may add system text,
   context passages, text shown before/after the answer, a canned reply (then the model is not
   called), and a metadata dict (`Turn.meta[stage.name]`: serve's `ming_<name>` field, chat's info line).
3. fit and render: everything that will be rendered is counted (the stages' system text included).
   Too long: the oldest exchanges go first, then the pasted report's normal items are shortened (the
   abnormal ones stay) and stages shrink their text (`Stage.shrink`); the answer room may then be
   reduced to a floor, with a notice; only a question that cannot fit alone raises `ContextTooLong`,
   which names the limits. The prompt is rendered once, here, and the engine is never asked for more
   than its window.
4. generate (`Pipeline.stream`): stage text before, the model's answer (or the canned reply), stage
   text after.
5. post-checks (`Stage.post_check`): see each finished sentence of the model text before it is shown,
   may hold it back or replace it, and may add text at the end. A check may answer `Regenerate(hint)`:
   the sentence is held back, the model is stopped and started once more with the hint added to the
   system text (fitted like the first prompt) and the text already shown as the answer's beginning.

The result (`TurnResult`) has one normalised finish reason: "stop" (the model or a stage ended the
answer), "length" (the answer room ran out), "cancelled" (the user or client stopped it), "answered"
(the caller's `until` had what it needed). OpenAI's wire format knows only stop/length:
`TurnResult.openai_finish` maps the other two to "stop".
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

from ming.engine.base import Chunk, Engine, GenerationConfig
from ming.errors import MingError
from ming.prompts import MODES, USE_TEMPLATE_DEFAULT
from ming.safety.report import shorten_report
from ming.templates import Message

FINISH_REASONS = ("stop", "length", "cancelled", "answered")
MIN_ANSWER_TOKENS = 64  # the answer room is never cut below this (or below what was asked, if less)


# =============================================================================================
# the turn and its stages
# =============================================================================================
@dataclass(frozen=True)
class Regenerate:
    """A post-check's verdict on a sentence that must not be shown: hold it back, stop the model and answer
    once more, continuing after the text already shown, with `hint` added to the system text. The pipeline
    regenerates at most once per answer (`Pipeline.max_regenerations`); when it cannot (already done, no
    room left in the window) the sentence is simply held back and the check's `finish` says what follows."""

    hint: str


class PostCheck:
    """Checks the model's text as it streams (made per answer by `Stage.post_check`). `per_sentence`
    False: the check only reads the whole answer in `finish`, so the text is not held back for it."""

    per_sentence = True
    pending = ""  # text the check holds back for now but means to show with what follows (a regeneration goes on after it)

    def sentence(self, text: str, shown: str) -> "str | Regenerate":
        """A finished sentence of model text, before anyone sees it; `shown` is the text shown so far.
        Return the text to show instead ('' holds it back), or `Regenerate(hint)`."""
        return text

    def regenerating(self, hint: str) -> None:
        """The model starts again after `shown` with `hint` in its prompt (some check asked for it):
        forget what belonged to the abandoned attempt."""

    def finish(self, shown: str) -> str:
        """The answer ended (`shown` is the model text as shown); return text to add after it ('' none)."""
        return ""


class Stage:
    """One step of the turn. Subclass it and list it in `ming.stages.REGISTRY`; every method is optional."""

    name = "stage"

    def bind(self, engine: Engine) -> None:
        """The pipeline's engine, handed over once when the pipeline is built (a stage that asks the loaded
        model something keeps it; the caller holds the engine while a turn is prepared)."""

    def prepare(self, turn: "Turn") -> None:
        """Before fitting: read `turn.conversation`; add `turn.system_text[self.name]`, `turn.context`,
        `turn.lead` / `turn.tail` (shown before / after the answer), `turn.canned` (the whole reply: the
        model is not called), `turn.meta[self.name]` (JSON-able) and `turn.notices[self.name]`."""

    def shrink(self, turn: "Turn") -> bool:
        """The window is nearly full: make the text you added shorter. True when something changed."""
        return False

    def post_check(self, turn: "Turn") -> PostCheck | None:
        """A checker for this answer's text (None: no check)."""
        return None


@dataclass
class Added:
    """Text a stage shows the user (not from the model)."""

    stage: str
    text: str


@dataclass
class Turn:
    conversation: list[Message]  # system prompt + history + new question, as the client sent them (stages read it)
    gen: GenerationConfig  # after fitting: max_new_tokens is what the window allows
    system_source: str = "none"  # "client" | "ming:<mode>" | "override" | "template" | "none"
    mode: str | None = None  # this turn's mode ("qa" | "consult" | None): serve picks it per request
    system_text: dict[str, str] = field(default_factory=dict)  # stage -> text added to the system message
    context: list[str] = field(default_factory=list)  # passages the answer rests on (rendered in the system message)
    lead: list[Added] = field(default_factory=list)
    tail: list[Added] = field(default_factory=list)
    canned: Added | None = None  # the reply without calling the model (refusal, template reply, …)
    meta: dict[str, Any] = field(default_factory=dict)  # stage -> metadata (serve: `ming_<stage>`)
    notices: dict[str, str] = field(default_factory=dict)  # kind -> one-line note (chat info line, serve warning)
    safety: Any = None  # ming.safety.SafetyDecision; None = safety off
    # set by fitting
    messages: list[Message] = field(default_factory=list)  # what is rendered
    prompt_ids: list[int] = field(default_factory=list)
    dropped: int = 0  # oldest exchanges dropped
    shortened: int = 0  # normal report items left out of the question
    answer_cut: bool = False  # max_new_tokens was lowered to fit the window

    @property
    def calls_model(self) -> bool:
        return self.canned is None


@dataclass
class TurnResult:
    text: str  # everything shown (stage text included)
    model_text: str  # what goes into the history as the assistant's message
    finish: str  # one of FINISH_REASONS
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    safety: Any = None  # SafetyDecision or None (safety off); serialised once, in meta["safety"]
    meta: dict[str, Any] = field(default_factory=dict)  # stage -> metadata
    attempts: int = 1  # model runs for this answer (2 after a `Regenerate`; usage counts both)

    @property
    def openai_finish(self) -> str:
        return "length" if self.finish == "length" else "stop"


@dataclass
class ReplyEvent:
    kind: str  # "added" (a stage's text) | "text" (model text, after post-checks) | "done"
    text: str = ""
    stage: str = ""  # for "added": which stage
    result: TurnResult | None = None  # for "done"


class ContextTooLong(MingError):
    """The question cannot fit the context window even alone."""

    def __init__(self, prompt_tokens: int, context_length: int, reserve: int, truncated: bool):
        self.prompt_tokens, self.context_length = prompt_tokens, context_length
        self.reserve, self.truncated = reserve, truncated
        what = ("the question alone (with the system prompt and the safety/context text, after dropping every earlier "
                "exchange and shortening the pasted report)" if truncated else "the conversation")
        super().__init__(f"{what} is {prompt_tokens} tokens; with at least {reserve} tokens kept for the answer it "
                         f"needs {prompt_tokens + reserve} but the context window is {context_length} tokens; shorten "
                         "the question, ask for a shorter answer (--max-new-tokens) or use a longer window "
                         "(--context-length)")


def finish_reason(engine_reason: str | None, *, answered: bool = False) -> str:
    """The one mapping from an engine's finish reason to the turn's."""
    if engine_reason == "cancelled":
        return "answered" if answered else "cancelled"
    return "length" if engine_reason == "length" else "stop"


def choose_system(messages: Sequence[Message], mode: str | None, override: str | None,
                  template_default: str | None) -> tuple[list[Message], str]:
    """The system prompt of a turn: the client's own system message wins, then an override (`--system`:
    '' none, '@template' the checkpoint's own), then the mode's prompt (mode None: no system prompt)."""
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0]["role"] == "system":
        return msgs, "client"
    if override is not None:
        text, source = (template_default, "template") if override == USE_TEMPLATE_DEFAULT else (override, "override")
    elif mode is None:
        text, source = None, "none"
    else:
        if mode not in MODES:
            raise MingError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        text, source = MODES[mode], f"ming:{mode}"
    if not text:
        return msgs, "none"
    return [{"role": "system", "content": text}] + msgs, source


# =============================================================================================
# the pipeline
# =============================================================================================
class Pipeline:
    """A caller's way of answering: the engine, the stages it runs, its system prompt settings."""

    max_regenerations = 1  # a `Regenerate` from a post-check restarts the model at most this often per answer

    def __init__(self, engine: Engine, stages: Sequence[Stage] = (), mode: str | None = "qa",
                 system: str | None = None):
        self.engine = engine
        self.stages = list(stages)
        self.mode = mode
        self.system = system
        for s in self.stages:
            bind = getattr(s, "bind", None)  # stages may be any object with the Stage methods they need
            if bind is not None:
                bind(engine)

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def system_prompt(self) -> str | None:
        msgs, _ = choose_system([], self.mode, self.system, self.engine.template.default_system)
        return msgs[0]["content"] if msgs else None

    # -- prepare ----------------------------------------------------------------------------------
    def prepare(self, messages: Sequence[Message], gen: GenerationConfig, *, mode: str | None = None,
                truncate: bool = True, exact_max_new: bool = False) -> Turn:
        """`messages` end with the new user message (a system message first is the client's own).
        `gen.max_new_tokens` is the answer length wanted; with `exact_max_new` it is not lowered to fit
        (serve's explicit max_tokens). `truncate=False`: a conversation that does not fit is an error
        (serve without "truncate": true) instead of dropping exchanges."""
        mode = mode or self.mode
        conversation, source = choose_system(messages, mode, self.system, self.engine.template.default_system)
        turn = Turn(conversation=conversation, gen=gen, system_source=source, mode=mode)
        for s in self.stages:
            s.prepare(turn)
        if turn.calls_model:
            self._fit(turn, truncate, exact_max_new)
        return turn

    def _render(self, turn: Turn, turns: list[Message]) -> tuple[list[Message], list[int]]:
        first = turn.conversation[0] if turn.conversation else {"role": "", "content": ""}
        system = first["content"] if first["role"] == "system" else ""
        extra = [t for t in turn.system_text.values() if t]
        if turn.context:
            extra.append("【参考资料】\n" + "\n\n".join(turn.context))
        text = "\n\n".join(x for x in [system] + extra if x).strip()
        msgs = ([{"role": "system", "content": text}] if text else []) + turns
        return msgs, list(self.engine.render(msgs).ids)

    def _fit(self, turn: Turn, truncate: bool, exact: bool) -> None:
        ctx = int(self.engine.context_length)
        want = turn.gen.max_new_tokens
        reserve = want if exact else max(1, min(want, ctx // 4))
        floor = reserve if exact else min(reserve, MIN_ANSWER_TOKENS)
        has_system = bool(turn.conversation) and turn.conversation[0]["role"] == "system"
        turns = [dict(m) for m in turn.conversation[1 if has_system else 0:]]
        msgs, ids = self._render(turn, turns)
        if len(ids) + want > ctx:
            if not truncate and len(ids) + reserve > ctx:
                raise ContextTooLong(len(ids), ctx, reserve, truncated=False)
            while truncate and len(ids) + reserve > ctx and len(turns) > 1:
                turns = turns[2:] if len(turns) > 2 else turns[-1:]  # one user + assistant exchange
                turn.dropped += 1
                msgs, ids = self._render(turn, turns)
            if truncate and len(ids) + reserve > ctx:
                question, n = shorten_report(turns[-1]["content"])
                if n:
                    turns[-1] = {"role": "user", "content": question}
                    turn.shortened = n
                    msgs, ids = self._render(turn, turns)
                for s in self.stages:
                    if len(ids) + reserve <= ctx:
                        break
                    if s.shrink(turn):
                        msgs, ids = self._render(turn, turns)
            if len(ids) + floor > ctx:
                raise ContextTooLong(len(ids), ctx, floor, truncated=truncate)
        max_new = min(want, ctx - len(ids))
        if turn.dropped:
            turn.notices["dropped"] = (f"the conversation is longer than the {ctx}-token context window: the oldest "
                                       f"{turn.dropped} exchange(s) were dropped (the system prompt and the question "
                                       "are kept)")
        if turn.shortened:
            turn.notices["shortened"] = (f"the pasted report was shortened to fit the {ctx}-token context window: "
                                         f"{turn.shortened} normal item(s) left out of the prompt (the abnormal ones "
                                         "stay)")
        if max_new < want:
            turn.answer_cut = True
            turn.notices["answer_cut"] = (f"the context window ({ctx} tokens) is nearly full: this answer is limited "
                                          f"to {max_new} tokens instead of {want}")
        turn.gen = turn.gen.replace(max_new_tokens=max_new)
        turn.messages, turn.prompt_ids = msgs, ids

    # -- answer -----------------------------------------------------------------------------------
    def stream(self, turn: Turn, cancel: threading.Event | None = None,
               until: Callable[[str], bool] | None = None) -> Iterator[ReplyEvent]:
        """The reply as events, ending with one "done" event that carries the `TurnResult`.
        `until(model text so far)` returning True stops generation there (finish "answered").
        Usage (prompt, completion and cached tokens) is summed over the model runs of a regeneration."""
        shown: list[str] = []
        model: list[str] = []
        state = {"answered": False, "last": Chunk(finish_reason="stop"), "again": None, "attempts": 0,
                 "lead_in": False, "ack": []}
        usage = [0, 0, 0]

        def added(a: Added) -> ReplyEvent:
            shown.append(a.text)
            return ReplyEvent("added", a.text, stage=a.stage)

        def show(sentences: list[str], checks: list[PostCheck], may_retry: bool) -> Iterator[ReplyEvent]:
            for text in sentences:
                if state["lead_in"]:  # a run's opening "好的，我明白了。" answers the instructions, not the patient
                    if not text.strip() or is_acknowledgement(text):
                        state["ack"].append(text)
                        continue
                    state["lead_in"] = False
                text = _checked(checks, text, "".join(model))
                if isinstance(text, Regenerate):
                    prefix = "".join(model) + "".join(getattr(c, "pending", "") for c in checks)
                    plan = self._regeneration(turn, text.hint, prefix) if may_retry else None
                    if plan is not None:
                        state["again"] = plan
                        return
                    text = ""  # held back; the check's finish says what follows
                if text:
                    model.append(text)
                    shown.append(text)
                    yield ReplyEvent("text", text)

        for a in turn.lead:
            yield added(a)
        if turn.canned is not None:
            if turn.canned.text:
                yield added(turn.canned)
        else:
            checks = [c for c in (s.post_check(turn) for s in self.stages) if c is not None]
            by_sentence = any(getattr(c, "per_sentence", True) for c in checks)
            stop = threading.Event()  # `until` has its answer
            prompt_ids, gen = turn.prompt_ids, turn.gen
            while True:
                state["attempts"] += 1
                state["lead_in"], state["ack"] = by_sentence, []  # whole sentences only (with a check reading them)
                may_retry = state["attempts"] <= self.max_regenerations
                halt = threading.Event()  # this run is abandoned for a regeneration
                held = _Sentences() if by_sentence else None
                run_last = None
                for ch in self.engine.stream(prompt_ids, gen, _either(_either(cancel, stop), halt)):
                    if ch.finish_reason:
                        run_last = ch
                    if halt.is_set():
                        continue  # drain: the engine ends the run and reports its usage
                    if ch.text:
                        yield from show(held.feed(ch.text) if held is not None else [ch.text], checks, may_retry)
                        if state["again"] is not None:
                            halt.set()
                            continue
                    if until is not None and not state["answered"] and until("".join(model)):
                        state["answered"] = True
                        stop.set()
                if run_last is not None:
                    for i, n in enumerate((run_last.prompt_tokens, run_last.completion_tokens, run_last.cached_tokens)):
                        usage[i] += n or 0
                if state["again"] is None and held is not None:
                    yield from show([held.rest()], checks, may_retry)
                if state["again"] is None and state["lead_in"] and not model and "".join(state["ack"]).strip():
                    state["lead_in"] = False  # the acknowledgement was all the model said: better than nothing
                    yield from show(state["ack"], checks, may_retry)
                if state["again"] is None:
                    state["last"] = run_last or state["last"]
                    break
                hint, (prompt_ids, gen) = state["again"]
                state["again"] = None
                for c in checks:
                    getattr(c, "regenerating", lambda h: None)(hint)
            for c in checks:
                extra = c.finish("".join(model))
                if extra:
                    yield added(Added(getattr(c, "stage", "check"), extra))
        for a in turn.tail:
            yield added(a)
        last, answered = state["last"], state["answered"]
        model_text = "".join(model) or (turn.canned.text if turn.canned is not None else "") or "".join(shown).strip()
        fin = finish_reason(last.finish_reason, answered=answered and not (cancel is not None and cancel.is_set()))
        if state["attempts"] <= 1:
            usage = [last.prompt_tokens, last.completion_tokens, last.cached_tokens]
        yield ReplyEvent("done", result=TurnResult(
            text="".join(shown), model_text=model_text, finish=fin, prompt_tokens=usage[0],
            completion_tokens=usage[1], cached_tokens=usage[2], safety=turn.safety,
            meta=dict(turn.meta), attempts=max(1, state["attempts"])))

    def _regeneration(self, turn: Turn, hint: str, prefix: str) -> tuple[str, tuple[list[int], GenerationConfig]] | None:
        """The prompt for answering again: fitted like the first (the hint counted as system text), then the
        text already shown as the beginning of the answer (the answer room shrinks by it; a seed moves on by
        one). None when the window leaves no room for it."""
        again = replace(turn, system_text={**turn.system_text, "regenerate": hint}, notices={}, messages=[],
                        prompt_ids=[], dropped=0, shortened=0, answer_cut=False)
        try:
            self._fit(again, truncate=True, exact=False)
        except ContextTooLong:
            return None
        ids = list(again.prompt_ids) + (self.engine.template.encode_text(prefix) if prefix else [])
        room = min(turn.gen.max_new_tokens - (len(ids) - len(again.prompt_ids)),
                   int(self.engine.context_length) - len(ids))
        if room < 1:
            return None
        seed = None if turn.gen.seed is None else turn.gen.seed + 1  # a seeded sample would take the same path
        return hint, (ids, turn.gen.replace(max_new_tokens=room, seed=seed))

    def answer(self, turn: Turn, cancel: threading.Event | None = None,
               until: Callable[[str], bool] | None = None) -> TurnResult:
        for ev in self.stream(turn, cancel, until):
            if ev.kind == "done":
                return ev.result
        raise AssertionError("stream ended without a result")


def with_seed_offset(turn: Turn, i: int) -> Turn:
    """The same turn for the i-th of several choices (seed, seed+1, …)."""
    if i == 0 or turn.gen.seed is None:
        return turn
    return replace(turn, gen=turn.gen.replace(seed=turn.gen.seed + i))


# =============================================================================================
# helpers
# =============================================================================================
_SENTENCE_END = re.compile(r"[。！？!?；;\n]|\.(?=\s)")


def split_sentences(text: str) -> tuple[list[str], str]:
    """Complete sentences (with their end mark) and the unfinished rest: the one rule for what a sentence is, used
    by the pipeline's hold-back and by the checks that read whole answers."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start:m.end()])
        start = m.end()
    return out, text[start:]


_ACK = re.compile(
    r"(?:好的?|嗯|明白了?|了解了?|理解了?|收到|抱歉|对不起|不好意思|非常抱歉|(?=我))"
    r"(?:[，,、。！!～~\s]*(?:我|您说得对)?(?:已经)?(?:明白|理解|了解|知道)了?"
    r"|[，,、\s]*(?:我|下面|接下来)?(?:会|将|来)?(?:重新|更正|修改|纠正)[^。！!？?\n]{0,16}"
    r"|[，,、\s]*(?:我)?(?:之前|刚才|上面)的?[^。！!？?\n]{0,16}(?:有误|错了|不对|不准确|有错误))?"
    r"[，,。！!～~…\s]*")


def is_acknowledgement(sentence: str) -> bool:
    """A sentence that only acknowledges the instructions ("好的，我明白了。", "抱歉，我之前说错了。", "收到。"):
    at the start of a model run (above all the run after a regeneration, whose hint is new system text) it
    speaks to the prompt, not to the patient, so the pipeline leaves it out. A sentence with content of its
    own ("好的，下面分析您的报告：") is not one."""
    text = unicodedata.normalize("NFKC", sentence).strip().strip("*#>- ")
    return bool(text) and _ACK.fullmatch(text) is not None


class _Sentences:
    """Holds streamed text back until a sentence ends."""

    def __init__(self):
        self.buf = ""

    def feed(self, text: str) -> list[str]:
        out, self.buf = split_sentences(self.buf + text)
        return out

    def rest(self) -> str:
        text, self.buf = self.buf, ""
        return text


def _checked(checks: list[PostCheck], text: str, shown: str) -> "str | Regenerate":
    for c in checks:
        if not text:
            break
        text = c.sentence(text, shown)
        if isinstance(text, Regenerate):
            return text
    return text


class _either:
    """A cancel flag set when either of two events is (the caller's cancel, or `until` having its answer)."""

    def __init__(self, a: threading.Event | None, b: threading.Event):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.b.is_set() or (self.a is not None and self.a.is_set())

    def set(self) -> None:
        self.b.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.b.wait(timeout) or self.is_set()
