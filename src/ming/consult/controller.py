"""The consultation controller: one stage of the turn pipeline in consult mode.

`step(messages, kb)` rebuilds what is known from the whole history, ranks candidate conditions
against the KB, checks cross-turn red flags, and decides this turn's action:

- `escalate`: findings together mean an emergency — say so now, ask nothing more;
- `ask`: one focused question (template `text`; `instruction` lets the model phrase it);
- `answer_then_ask`: the patient asked their own question — answer it briefly, then ask `text`;
- `assess`: stop asking (leading candidates separated, nothing more to add, the patient wants the
  verdict, or the question limit) and give the assessment built from the KB;
- `answer`: after the assessment, answer follow-up questions grounded in it.

Deterministic and stateless: the same messages give the same action."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ming.consult import assess as assess_mod
from ming.consult import redflags
from ming.consult.questions import Question, next_question
from ming.consult.rank import Candidate, rank
from ming.consult.state import ConsultState, build_state
from ming.kb.store import KB

ASSESSED = re.compile(r"初步判断|初步诊断|最可能(?:的诊断|是)|诊断[:：]")  # an assistant turn that concluded
ANSWER_FALLBACK = "初步判断见上文；如果出现新的症状或情况有变化，请告诉我，我再帮您分析。"
KINDS = ("escalate", "ask", "answer_then_ask", "assess", "answer")


@dataclass
class ConsultConfig:
    max_questions: int = 6  # questions before the assessment at the latest
    min_questions: int = 3  # questions before candidates may count as separated (onset, a symptom, the history)
    separated_prob: float = 0.5  # top candidate's probability …
    separated_ratio: float = 3.0  # … and its lead over the second
    top: int = 10  # candidates ranked and shown


@dataclass
class ConsultAction:
    kind: str
    text: str  # what to say if the model does not phrase it (question, assessment or escalation)
    instruction: str  # system-prompt addendum asking the model to phrase `text`
    state: ConsultState
    candidates: list[Candidate] = field(default_factory=list)
    question: Question | None = None
    assessment: dict | None = None
    red_flags: list[redflags.RedFlag] = field(default_factory=list)
    patient_question: str = ""
    reason: str = ""

    def to_dict(self) -> dict:
        """The `ming_consult` field of a server reply (JSON-serialisable)."""
        return {"kind": self.kind, "text": self.text, "reason": self.reason,
                "question": None if self.question is None else {"slot": self.question.slot, "text": self.question.text,
                                                                 "reason": self.question.reason},
                "candidates": [c.to_dict() for c in self.candidates[:5]],
                "findings": self.state.findings(), "red_flags": [f.to_dict() for f in self.red_flags],
                "assessment": self.assessment, "patient_question": self.patient_question,
                "state": self.state.to_dict()}

    def why(self) -> str:
        """Plain-text reasoning for `ming kb consult`; `/why` in chat prints the same from the meta dict."""
        return why_text(self.to_dict())


def why_text(meta: dict) -> str:
    """The reasoning of one consult turn from its `to_dict()` (`turn.meta["consult"]`, `ming_consult`):
    the next step, what is known, the candidates with their supporting findings, red flags, the question."""
    st, f = meta.get("state") or {}, meta.get("findings") or {}
    lines = [f"下一步：{meta['kind']}（{meta['reason']}）"]
    if st.get("chief_complaint"):
        lines.append(f"主诉：{st['chief_complaint']}")
    age, temp = f.get("age"), f.get("temperature")
    rows = [("有", "、".join(f.get("present") or [])), ("没有", "、".join(f.get("absent") or [])),
            ("部位", "、".join(f.get("sites") or [])), ("性质", "、".join(f.get("character") or [])),
            ("时间", "、".join(f.get("duration") or [])), ("体温", f"{temp:g}℃" if temp is not None else ""),
            ("诱因", "、".join(f.get("triggers") or [])), ("既往史", "；".join(f.get("history") or [])),
            ("用药", "；".join(f.get("medication") or [])), ("过敏", "；".join(f.get("allergy") or [])),
            ("怀孕", "；".join(f.get("pregnancy") or [])),
            ("年龄/性别", " ".join(x for x in (f"{age:g}岁" if age is not None else "", f.get("sex") or "") if x))]
    lines += [f"{k}：{v}" for k, v in rows if v]
    if st.get("contradictions"):
        lines.append("前后矛盾：" + "；".join(f"{c['symptom']}（先{c['was']}后{c['now']}）" for c in st["contradictions"]))
    if meta.get("candidates"):
        lines.append("候选（知识库）：")
        for c in meta["candidates"][:5]:
            lines.append(f"  {c['name']} {c['prob']:.0%}  支持：{'、'.join(c['supporting']) or '-'}"
                         + (f"  不支持：{'、'.join(c['against'])}" if c.get("against") else ""))
    if meta.get("red_flags"):
        lines.append("红旗征：" + "；".join(f"{x['suspicion']}（{'+'.join(x['findings'])}）" for x in meta["red_flags"]))
    if meta.get("question"):
        lines.append(f"要问：{meta['question']['text']}（{meta['question']['reason']}）")
    return "\n".join(lines)


def _assessed(messages: Sequence[dict]) -> bool:
    return any(m.get("role") == "assistant" and bool(ASSESSED.search(m.get("content") or "")) for m in messages)


def ask_instruction(q: Question, patient_question: str = "") -> str:
    head = ("患者刚才问了自己的问题：“" + patient_question + "”。先用一两句话简要回答（不下诊断、不推荐具体药物），然后"
            if patient_question else "")
    return (f"你是问诊医生，正在采集病史。{head}只问患者一个问题，用通俗的中文、一两句话，不要给诊断或建议。"
            f"要问的问题：{q.text}")


def stop_reason(st: ConsultState, cands: list[Candidate], cfg: ConsultConfig) -> str | None:
    asked = st.assistant_turns
    if st.asks_verdict:
        return "the patient asks for the verdict"
    if st.nothing_more and asked >= 1:
        return "the patient has nothing to add"
    if asked >= cfg.max_questions:
        return f"question limit ({cfg.max_questions}) reached"
    unclear = any(c["turn"] == st.patient_turns and not st.asked.get(f"clarify:{c['symptom']}") for c in st.contradictions)
    if len(cands) >= 1 and asked >= cfg.min_questions and st.known("duration") and not unclear:
        p1 = cands[0].prob
        p2 = cands[1].prob if len(cands) > 1 else 0.0
        if p1 >= cfg.separated_prob and p1 >= cfg.separated_ratio * p2:
            return f"leading candidate separated ({cands[0].name} {p1:.0%} vs {p2:.0%})"
    return None


def step(messages: Sequence[dict], kb: KB, config: ConsultConfig | None = None) -> ConsultAction:
    """This turn's action for a conversation that ends with the patient's message."""
    cfg = config or ConsultConfig()
    st = build_state(messages, kb.lexicon)
    cands = rank(st, kb, top=cfg.top)
    flags = redflags.check(st)
    pq = st.patient_question
    if flags:
        a = assess_mod.build(st, kb, cands, flags)
        return ConsultAction("escalate", a["text"], a["instruction"], st, cands, assessment=a, red_flags=flags,
                             patient_question=pq, reason="red flags: " + ", ".join(f.id for f in flags))
    if _assessed(messages):
        a = assess_mod.build(st, kb, cands, flags)
        instr = ("问诊结论已经给出（见上文）。回答患者的追问，只依据已给出的结论和下面的事实，不要添加新的疾病或药物。\n事实：\n"
                 + a["text"])
        text = ("关于您的问题，请结合上面的初步判断，当面咨询接诊医生后再决定用药或处理。" if pq else "") + ANSWER_FALLBACK
        return ConsultAction("answer", text, instr, st, cands, assessment=a, patient_question=pq,
                             reason="assessment already given")
    why_stop = stop_reason(st, cands, cfg)
    q = None if why_stop else next_question(st, kb, cands)
    if q is None:
        a = assess_mod.build(st, kb, cands, flags)
        return ConsultAction("assess", a["text"], a["instruction"], st, cands, assessment=a, patient_question=pq,
                             reason=why_stop or "nothing left worth asking")
    kind = "answer_then_ask" if pq else "ask"
    return ConsultAction(kind, q.text, ask_instruction(q, pq), st, cands, question=q, patient_question=pq,
                         reason=q.reason)
