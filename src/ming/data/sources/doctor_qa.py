"""Real doctor-patient QA -> single-turn QA: greetings, sign-offs, signatures and ads removed, answers cut off
upstream trimmed back to their last full sentence, department kept in meta.

Input rows: `{"id", "question", "answer", "department"?, "title"?}` (huatuo26m_qa, toyhom_qa).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from ming.data.sources._common import Skip, SourceContext, convert_rows, prepare, trim_to_sentence

OPTIONS = {"min_answer_chars": 10}

_GREETING = re.compile(r"^(?:(?:你好|您好|hi|hello|亲爱的[^，,。！!]{0,8}|(?:感谢|谢谢)(?:您的|你的)?(?:信任|提问|咨询)|"
                       r"很高兴(?:为您|为你|能)?(?:解答|回答|回复)[^，,。！!]{0,6})[，,！!。~～：: ]*)+", re.I)
_SIGNOFF = re.compile(
    r"祝(?:您|你|宝宝|孩子)?(?:早日康复|身体健康|健康|生活愉快|好运|顺利)|希望(?:我的|以上的?|这些)?(?:回答|建议|解答)?(?:能)?对(?:您|你)有"
    r"(?:所)?帮助|(?:如果?|若)?(?:还)?有(?:其他|任何)?(?:疑问|问题).{0,12}(?:咨询|追问|联系|提问|问我)|欢迎(?:再次|随时)?(?:咨询|追问|来问)|"
    r"(?:请|记得)?(?:点击|关注|采纳|好评|点赞)|(?:以上|此|本)(?:回答|建议|意见|解答)(?:仅供参考|仅作参考)|仅供参考|"
    r"(?:扫码|加我|私信)|我是[^，。,]{0,12}(?:助手|智能|AI|机器人|模型)|很高兴(?:能)?(?:帮到|为)(?:你|您)|本人(?:是|为).{0,20}医(?:生|师)|(?:主治|副主任|主任)医师[^。]{0,10}(?:回复|解答)")
_CLAUSE = re.compile(r"[^，,。！？!?；;\n]+[，,。！？!?；;\n]*")
# every alternative of _SIGNOFF holds one of these words (祝…, …帮助, …疑问/问题…, 欢迎…, 点击/关注/采纳/好评/点赞,
# …参考, 扫码/加我/私信, 我是…, 很高兴…, 本人…, …医师…): a text without any cannot hold a sign-off
_SIGNOFF_CUE = re.compile("祝|帮助|疑问|问题|欢迎|点击|关注|采纳|好评|点赞|参考|扫码|加我|私信|我是|很高兴|本人|医师")
_LABEL = re.compile(r"\s*(病情分析|指导意见|意见建议)\s*[：:]?\s*")
_EMPTY_LABEL = re.compile(r"\n?(?:病情分析|指导意见|意见建议)：$")
_LINE_LABEL = re.compile(r"^(病情分析|指导意见|意见建议)：")
_EDGE_PUNCT = re.compile(r"^[，,。！!：:；;、\s]+|[，,、：:；;\s]+$")


# cheap tests implied by the patterns above (a text that fails one cannot match the pattern):
_GREETING_FIRST = frozenset("你您hH亲感谢很")  # the first character of every _GREETING alternative (re.I: h/H only)
_CLAUSE_DELIMS = frozenset("，,。！？!?；;\n")  # _CLAUSE's delimiters: the clauses of a text that starts with
# none of them, joined, are the text
_LABELS = ("病情分析", "指导意见", "意见建议")
_EDGE_FIRST = frozenset("，,。！!：:；;、")
_EDGE_LAST = frozenset("，,、：:；;")


def _greeting_sub(text: str) -> str:
    return _GREETING.sub("", text) if text[:1] in _GREETING_FIRST else text


def clean_answer(text: str) -> str:
    text = _greeting_sub(text.strip()).strip()
    if _SIGNOFF_CUE.search(text) is None:  # no sign-off anywhere: every clause is kept
        kept = [text] if text[:1] not in _CLAUSE_DELIMS else _CLAUSE.findall(text)
    else:
        kept = []
        for clause in _CLAUSE.findall(text):
            m = _SIGNOFF.search(clause) if _SIGNOFF_CUE.search(clause) else None
            if m is None:
                kept.append(clause)
            elif m.start() >= 4:  # content, then a sign-off glued on without punctuation
                kept.append(clause[:m.start()])
    text = "".join(kept).strip()
    if any(lab in text for lab in _LABELS):
        text = _LABEL.sub(lambda m: f"\n{m.group(1)}：", text).strip()
        text = _EMPTY_LABEL.sub("", text)  # a label left with nothing after it
        lines = []
        for line in text.split("\n"):
            m = _LINE_LABEL.match(line)
            lines.append(m.group(0) + _greeting_sub(line[m.end():]).lstrip("，,！!。") if m else _greeting_sub(line))
    else:  # no label: _LABEL, _EMPTY_LABEL and _LINE_LABEL cannot match
        lines = [_greeting_sub(line) for line in text.split("\n")]
    text = "\n".join(lines).strip()
    if text and (text[0] in _EDGE_FIRST or text[-1] in _EDGE_LAST or text[0].isspace() or text[-1].isspace()):
        text = _EDGE_PUNCT.sub("", text)
    return text


def finish(text: str, min_chars: int) -> str:
    """End the answer on a full sentence: a short dangling fragment (cut off upstream) is dropped, an answer that
    simply lacks the final full stop gets one."""
    if not text or text[-1] in "。！？!?.）)”\"～~…":
        return text
    tail = re.split(r"[，,。：:；;！？!?]", text)[-1]
    if len(tail) < 8 or re.search(r"[：:]\s*\S{0,12}$", text):
        return trim_to_sentence(text, min_chars=min_chars)
    return text + "。"


def convert(row: dict, ctx: SourceContext) -> Iterator[dict]:
    q = str(row["question"]).strip()
    a = finish(clean_answer(str(row["answer"])), ctx.options["min_answer_chars"])
    if len(a) < ctx.options["min_answer_chars"]:
        raise Skip("answer_empty_after_cleaning")
    meta = {}
    for k in ("department", "title"):
        if row.get(k):
            meta[k] = str(row[k]).strip()
    yield ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                     key=row.get("id") or q, meta=meta)


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    yield from convert_rows(paths, ctx, convert, required=("question", "answer"),
                            types={"question": str, "answer": str})
