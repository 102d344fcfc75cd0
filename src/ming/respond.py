"""One reply = the safety layer around the model. Chat, the server and the evaluator all answer
through `reply_stream`, so an emergency is escalated, a harmful request refused and a pasted report
grounded the same way everywhere."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ming.engine.base import Chunk, Engine, GenerationConfig
from ming.safety import SafetyPolicy
from ming.templates import Message


@dataclass
class ReplyEvent:
    kind: str  # "safety" (text from the safety layer) | "text" (model text) | "done"
    text: str = ""
    chunk: Chunk | None = None  # for "done": usage and finish_reason of the model call (if any)
    decision: Any = None  # ming.safety.SafetyDecision (for "done")
    model_text: str = ""  # for "done": what the model said (stored in history)
    full_text: str = ""  # for "done": everything shown to the user
    info: dict = field(default_factory=dict)


def load_policy(mode: str = "on"):
    """The safety policy for `--safety MODE`; None for "off" (the model answers alone)."""
    if mode == "off":
        return None

    return SafetyPolicy(mode=mode)


def with_system_addendum(messages: Sequence[Message], addendum: str) -> list[Message]:
    msgs = [dict(m) for m in messages]
    if not addendum:
        return msgs
    if msgs and msgs[0]["role"] == "system":
        msgs[0]["content"] = (msgs[0]["content"] + "\n\n" + addendum).strip()
    else:
        msgs.insert(0, {"role": "system", "content": addendum})
    return msgs


def reply_stream(engine: Engine, messages: Sequence[Message], gen: GenerationConfig, policy=None,
                 cancel: threading.Event | None = None, prompt_ids: Sequence[int] | None = None) -> Iterator[ReplyEvent]:
    """Yield the reply as events. `messages` ends with the new user message (system first if any).
    `prompt_ids` may be given when the caller already rendered (and fitted) the prompt."""
    decision = policy.check(list(messages)) if policy is not None else None
    shown: list[str] = []
    model_parts: list[str] = []
    last = Chunk(finish_reason="stop")

    def safety(text: str):
        shown.append(text)
        return ReplyEvent("safety", text)

    if decision is not None and decision.action == "refuse":
        yield safety(decision.refusal)
        yield ReplyEvent("done", chunk=last, decision=decision, model_text=decision.refusal,
                         full_text="".join(shown))
        return
    if decision is not None and decision.prefix:
        yield safety(decision.prefix + "\n\n")
    if decision is not None and getattr(decision, "findings_table", ""):
        # a pasted lab report: the graded findings the model's explanation must rest on
        yield safety(decision.findings_table + "\n\n")
    if decision is None or decision.call_model:
        if decision is not None and decision.system_addendum:
            ids = engine.render(with_system_addendum(messages, decision.system_addendum)).ids
        else:
            ids = list(prompt_ids) if prompt_ids is not None else engine.render(messages).ids
        for ch in engine.stream(ids, gen, cancel):
            if ch.text:
                model_parts.append(ch.text)
                shown.append(ch.text)
                yield ReplyEvent("text", ch.text)
            if ch.finish_reason:
                last = ch
    if decision is not None and decision.suffix:
        yield safety("\n\n" + decision.suffix)
    model_text = "".join(model_parts) or (decision.prefix if decision is not None else "")
    yield ReplyEvent("done", chunk=last, decision=decision, model_text=model_text, full_text="".join(shown))
