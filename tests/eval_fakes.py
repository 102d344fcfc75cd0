"""Scripted stand-ins for a model, shared by the eval tests (not a test module)."""

from __future__ import annotations

import re

from ming.eval.clients import Reply

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "eval"


class ScriptedClient:
    """Answers with fn(messages) -> str. `fail_after` raises after that many calls (a killed run)."""

    kind = "local"
    safety = "off"
    can_loglik = False

    def __init__(self, fn, fail_after: int | None = None, name: str = "scripted"):
        self.fn = fn
        self.fail_after = fail_after
        self.calls = 0
        self.name = name
        self.seen: list[list[dict]] = []

    def describe(self) -> dict:
        return {"kind": "fake", "name": self.name, "backend": "scripted", "safety": "off"}

    def chat(self, messages, gen) -> Reply:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.seen.append([dict(m) for m in messages])
        text = self.fn(messages)
        return Reply(text=text, model_text=text, completion_tokens=len(text))


ANSWERS = {"高血压患者饮食": "B", "右心房": "D", "上呼吸道感染": "A、B、D", "空腹血糖": "C", "正常心率": "B",
           "青霉素": "A"}


def exam_taker(messages) -> str:
    """Knows the fixture answers; replies in varied real-looking phrasings."""
    q = messages[-1]["content"]
    for key, ans in ANSWERS.items():
        if key in q:
            if key == "青霉素":
                return "这个问题我不太确定。"  # unparsed on purpose
            if key == "正常心率":
                return "正确答案是 B，60-100次/分。"
            return f"答案：{ans}\n理由：略"
    return "答案：A"


def last_user(messages) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def doctor_script(messages) -> str:
    """A doctor that asks about duration, then medication, then concludes with the case's word."""
    n_doctor = sum(1 for m in messages if m["role"] == "assistant")
    if n_doctor == 0:
        return "请问这种情况持续多久了？"
    if n_doctor == 1:
        return "用过什么药吗？有没有过敏史？"
    text = " ".join(m["content"] for m in messages)
    dx = "湿疹" if re.search(r"红疹|痒", text) else "肺部感染"
    return f"诊断：{dx}。建议及时就医。"
