"""The consultation controller as a stage of the turn pipeline (`ming.respond.Pipeline`, issue 14):
runs after the safety check on consult-mode turns (`turn.mode == "consult"`; serve picks the mode per
request, so one stage serves both modes and passes qa turns untouched) and decides what this turn does.

    # ming/stages.py, REGISTRY (after "safety"):  "consult": ming.consult.stage.from_options

The KB loads on the first consult turn (at start when the caller's mode is consult), building its
index first if there is none (`ming.kb.load_kb`, a line on stderr). With no KB source at all
(no $MING_KB, no ../shared/data/medical_kg) consult turns get the plain model and one warning.

- escalate: the controller's escalation is the whole reply (the model is not called);
- ask: the model phrases the chosen question (`instruction` in the system text, short answer room);
  its words are held back and replaced by the template unless they ask that one thing
  (`phrase.final_text`); `phrase="none"` makes the template the reply without calling the model;
- answer_then_ask: the model answers the patient's question, the controller's question follows;
- assess: the template assessment is the reply (`phrase="all"`: the model words it, checked likewise);
- answer: the model answers follow-ups with the assessment's facts in the system text.
`turn.meta["consult"]` is `ConsultAction.to_dict()` (serve: `ming_consult`; chat: `/why` prints
`why_text(meta)`)."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace
from typing import Callable

from ming.consult import controller, phrase, rank
from ming.consult.controller import ConsultAction, ConsultConfig, step
from ming.errors import MingError
from ming.kb.store import KB, load_kb

PHRASE_MODES = ("none", "questions", "all")


class _Held:
    """Post-check: hold the model's words back, then show `phrase.final_text` of them."""

    stage = "consult"

    def __init__(self, action, kb: KB):
        self.action, self.kb, self.raw = action, kb, ""

    def sentence(self, text: str, shown: str) -> str:
        self.raw += text
        return ""

    def finish(self, shown: str) -> str:
        return phrase.final_text(self.action, self.raw, self.kb.lexicon)


class _ThenAsk:
    """Post-check: the model's answer streams; the controller's question follows unless it was asked."""

    stage = "consult"

    def __init__(self, action, kb: KB):
        self.action, self.kb = action, kb

    def sentence(self, text: str, shown: str) -> str:
        return text

    def finish(self, shown: str) -> str:
        if self.action.question is None or phrase.asks(shown, self.action.question.slot, self.kb.lexicon):
            return ""
        return "\n\n" + self.action.text


class ConsultStage:
    name = "consult"

    def __init__(self, kb: KB | Callable[[], KB], phrase: str = "questions", config: ConsultConfig | None = None,
                 warn: Callable[[str], None] | None = None):
        """`kb`: the KB, or a function that loads it (called once, on the first consult turn or `ready()`;
        a `MingError` from it — no KB source — makes consult turns plain, with one warning via `warn`)."""
        if phrase not in PHRASE_MODES:
            raise ValueError(f"consult phrase mode must be one of {PHRASE_MODES}, got {phrase!r}")
        self.phrase, self.config = phrase, config or ConsultConfig()
        self._load = None if isinstance(kb, KB) else kb
        self._kb: KB | None = rank.warm(kb) if isinstance(kb, KB) else None
        self._lock = threading.Lock()
        self.warn = warn or (lambda msg: print(f"[ming] {msg}", file=sys.stderr, flush=True))
        self.unavailable = ""  # why there is no KB (after a failed load)

    def ready(self) -> KB | None:
        """The KB, loaded now if it was not yet; None when there is none (warned once)."""
        if self._kb is None and self._load is not None:
            with self._lock:
                if self._kb is None and self._load is not None:
                    try:
                        self._kb = rank.warm(self._load())
                    except MingError as exc:
                        self.unavailable = str(exc)
                        self.warn(f"consult mode without a knowledge base, so no consultation controller: the plain "
                                  f"model answers consult turns ({exc})")
                    self._load = None
        return self._kb

    @property
    def kb(self) -> KB | None:
        return self.ready()

    def action_for(self, turn) -> ConsultAction:
        return step(turn.conversation, self.kb, self.config)

    def prepare(self, turn) -> None:
        from ming.respond import Added  # the pipeline's own type (ming.respond imports no stage)

        if getattr(turn, "mode", "consult") != "consult" or self.ready() is None:
            return
        a = self.action_for(turn)
        turn.meta[self.name] = a.to_dict()
        turn.notices[self.name] = f"{a.kind}: {a.reason}"
        if turn.canned is not None:  # the safety stage already gave the whole reply (refusal, strict escalation)
            return
        if a.kind == "escalate":
            turn.canned = Added(self.name, a.text)
            return
        template_only = self.phrase == "none" or (a.kind == "assess" and self.phrase != "all")
        if template_only and a.kind in ("ask", "assess"):
            turn.canned = Added(self.name, a.text)
            return
        turn.system_text[self.name] = a.instruction
        if a.kind == "ask":
            turn.gen = turn.gen.replace(max_new_tokens=min(turn.gen.max_new_tokens, phrase.QUESTION_TOKENS))

    def shrink(self, turn) -> bool:
        return False

    def post_check(self, turn):
        """Built from `turn.meta` (the stage object is shared by concurrent turns and keeps nothing)."""
        meta = turn.meta.get(self.name)
        if not meta or turn.canned is not None:
            return None
        view = action_view(meta)
        if meta["kind"] in ("ask", "assess"):
            return _Held(view, self.kb)
        if meta["kind"] == "answer_then_ask":
            return _ThenAsk(view, self.kb)
        return None


def from_options(opts) -> ConsultStage:
    """The stage for a caller (`ming.stages.StageOptions`): KB from $MING_KB or the data folder, loaded at
    once when the caller's mode is consult, else on the first consult turn (so qa callers do not wait);
    `opts.settings["consult"]` holds the stage's own options (phrase, config)."""
    stage = ConsultStage(load_kb, **opts.settings.get("consult", {}))
    if opts.mode == "consult":
        stage.ready()
    return stage


def action_view(meta: dict) -> SimpleNamespace:
    """What `phrase.final_text` reads of an action, from its `to_dict()`."""
    q = meta.get("question")
    return SimpleNamespace(kind=meta["kind"], text=meta["text"], assessment=meta.get("assessment"),
                           question=SimpleNamespace(slot=q["slot"], text=q["text"]) if q else None)


def why_text(meta: dict | None, mode: str | None = "consult") -> str:
    """`/why` in chat: the reasoning of the last consult-mode turn, from its `turn.meta["consult"]`."""
    if mode != "consult":
        return "（qa 模式没有问诊记录：/why 显示智能问诊的思路，请用 `ming chat --mode consult`）"
    if not meta:
        return "（还没有问诊记录：在 consult 模式下描述症状后再用 /why）"
    return controller.why_text(meta)
