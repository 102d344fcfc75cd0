"""The consultation controller as a stage of the turn pipeline (`ming.respond.Pipeline`, issue 14):
runs after the safety check in consult mode and decides what this turn does.

    # ming/stages.py, REGISTRY (after "safety"):
    "consult": lambda opts: ConsultStage(load_kb(), **opts.settings.get("consult", {}))
               if opts.mode == "consult" else None,

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

from types import SimpleNamespace

from ming.consult import phrase, rank
from ming.consult.controller import ConsultAction, ConsultConfig, step
from ming.kb.store import KB

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

    def __init__(self, kb: KB, phrase: str = "questions", config: ConsultConfig | None = None):
        if phrase not in PHRASE_MODES:
            raise ValueError(f"consult phrase mode must be one of {PHRASE_MODES}, got {phrase!r}")
        self.kb, self.phrase, self.config = rank.warm(kb), phrase, config or ConsultConfig()

    def action_for(self, turn) -> ConsultAction:
        return step(turn.conversation, self.kb, self.config)

    def prepare(self, turn) -> None:
        from ming.respond import Added  # the pipeline's own type (ming.respond imports no stage)

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


def action_view(meta: dict) -> SimpleNamespace:
    """What `phrase.final_text` reads of an action, from its `to_dict()`."""
    q = meta.get("question")
    return SimpleNamespace(kind=meta["kind"], text=meta["text"], assessment=meta.get("assessment"),
                           question=SimpleNamespace(slot=q["slot"], text=q["text"]) if q else None)


def why_text(meta: dict | None) -> str:
    """`/why` in chat: the reasoning of the last consult-mode turn, from its `turn.meta["consult"]`."""
    if not meta:
        return "（还没有问诊记录：在 consult 模式下描述症状后再用 /why）"
    lines = [f"下一步：{meta['kind']}（{meta['reason']}）"]
    f = meta.get("findings") or {}
    for key, label in (("present", "有"), ("absent", "没有"), ("sites", "部位"), ("duration", "时间")):
        if f.get(key):
            lines.append(f"{label}：{'、'.join(f[key])}")
    for c in meta.get("candidates") or []:
        lines.append(f"  {c['name']} {c['prob']:.0%}  支持：{'、'.join(c['supporting']) or '-'}")
    if meta.get("question"):
        lines.append(f"要问：{meta['question']['text']}（{meta['question']['reason']}）")
    return "\n".join(lines)
