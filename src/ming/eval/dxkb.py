"""Diagnosis accuracy through the knowledge base, synonym-aware: the KB diseases named in the doctor's
diagnosis sentence, in order, matched against the gold diagnosis with `KB.same_disease` (names, aliases,
the gold's own terms). Top-1: the first one named matches; top-3: one of the first three does.
Used by `ming eval` (consult tasks) and bench/consult.py."""

from __future__ import annotations

import re

_DX_MARK = re.compile(r"诊断|初步判断|最可能|考虑")


def diagnosis_span(text: str) -> str:
    """The sentence that states the diagnosis (from the first 诊断/初步判断/最可能/考虑 to the end of its
    sentence), so symptoms and advice elsewhere in the answer that happen to be KB disease names
    (咳嗽, 高热 …) do not count as diagnoses. The first sentence when there is no such word."""
    text = text or ""
    m = _DX_MARK.search(text)
    start = m.start() if m else 0
    end = re.search(r"[。\n]", text[start:])
    return text[start:start + (end.start() if end else 120)]


def kb_hits(text: str, gold: str | None, kb) -> tuple[bool | None, bool | None]:
    """(top-1, top-3) for one final answer; (None, None) when there is no gold diagnosis."""
    if not gold:
        return None, None
    hits = [kb.same_disease(n, gold) for n in kb.diseases_in(diagnosis_span(text))[:3]]
    return bool(hits and hits[0]), any(hits)
