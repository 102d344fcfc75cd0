"""The model's part in a consult-mode turn: put the controller's choice into plain Chinese, and fall
back to the template when it did not. The pipeline calls `model_messages` to build the prompt and
`final_text` with what the model said (or None when no model is asked)."""

from __future__ import annotations

import re
from typing import Sequence

from ming.consult.controller import ConsultAction
from ming.consult.state import asked_slots
from ming.kb.symptoms import Lexicon

QUESTION_TOKENS = 60  # enough for one question in one or two sentences
_DIAGNOSIS_WORDS = re.compile(r"诊断|确诊|考虑为|可能是.{0,8}(?:病|炎|症)|建议(?:服用|吃|使用)")


def model_messages(messages: Sequence[dict], action: ConsultAction) -> list[dict]:
    """The conversation with the action's instruction added to (or as) the system message."""
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system":
        msgs[0]["content"] = (msgs[0]["content"] + "\n\n" + action.instruction).strip()
    else:
        msgs.insert(0, {"role": "system", "content": action.instruction})
    return msgs


def wants_model(action: ConsultAction) -> bool:
    """An emergency is never left to the model: the escalation is the template's."""
    return action.kind != "escalate"


def asks(text: str, slot: str, lexicon: Lexicon) -> bool:
    return slot in asked_slots(text, lexicon)


def acceptable_question(text: str, action: ConsultAction, lexicon: Lexicon) -> bool:
    """The model's question asks exactly one thing, the thing the controller chose, and diagnoses nothing."""
    if action.question is None:
        return False
    n_q = text.count("？") + text.count("?")
    return (n_q == 1 and asks(text, action.question.slot, lexicon)
            and not _DIAGNOSIS_WORDS.search(text))


def final_text(action: ConsultAction, model_text: str | None, lexicon: Lexicon) -> str:
    """What the patient sees this turn."""
    text = (model_text or "").strip()
    if action.kind == "escalate" or not text:
        return action.text
    if action.kind == "ask":
        return text if acceptable_question(text, action, lexicon) else action.text
    if action.kind == "answer_then_ask":
        # the model answers the patient's question; the controller's question follows unless the model asked it
        if action.question and asks(text, action.question.slot, lexicon):
            return text
        return text.rstrip() + "\n\n" + action.text
    if action.kind == "assess":
        names = [c["name"] for c in (action.assessment or {}).get("candidates", [])]
        # the model's wording is kept only if it still names the leading candidate and the disclaimer's point
        if names and names[0] in text and ("面诊" in text or "就医" in text):
            return text
        return action.text
    return text  # "answer": the model answers follow-ups from the assessment's facts
