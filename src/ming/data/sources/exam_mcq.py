"""Licensing-exam MCQ -> QA that states the answer and explains it.

Input rows: `{"id", "question", "options": {"A": ...}, "answer": "B" | "ABD", "explanation"?}` (shared/data exam
schema). The explanation is used when present; multi-answer items say so in the prompt and list every correct
option. Case-style items ("女，2岁。…") can be left to `case_reasoning` with `cases: exclude`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Iterator

from ming.data.records import stable_id
from ming.data.sources._common import Skip, SourceContext, convert_rows, pick, prepare

OPTIONS = {
    "cases": "include",  # include | exclude | only: case-style questions (age in the first 30 characters)
    "require_explanation": False,
    "reply": "explain",   # explain: "正确答案是 B. …" + full 解析 | short: "答案：B（…）" + a reason of at most reason_chars
    "reason_chars": 160,
    # reorder the options (seeded by the item) so the right letter of single-answer items is drawn uniformly from the
    # item's letters: a model trained on them cannot win by favouring one letter. Option letters the explanation
    # names in a recognisable form ("（A错）", "选项B", "C项", "故选D", "答案E") follow the options; an item whose
    # explanation has another stand-alone capital A-E ("维生素A") keeps its order. meta.options_shuffled says which.
    "shuffle_options": False,
}
LETTER = re.compile(r"(?<![A-Za-z])[A-E]+(?![A-Za-z])")
_RUN = r"[A-E](?:[、,，和及与/]?[A-E])*"
LETTER_REF = re.compile(r"[（(][A-E对错正确误，,、\s]*[A-E][A-E对错正确误，,、\s]*[）)]"  # （A对BCDE错）
                        rf"|(?<=选项){_RUN}(?![A-Za-z])|(?<=[选故]){_RUN}(?![A-Za-z])"
                        rf"|(?<![A-Za-z]){_RUN}(?=\s*(?:项|选项))|(?<=答案)[为是：:]?\s*{_RUN}(?![A-Za-z])")

CASE_RE = re.compile(r"\d+\s*(?:岁|个月|月龄|天)|\d+-year-old|\byears? old\b")
_ZH_PROMPTS = ["{q}\n{opts}", "以下是一道医学考试选择题，请选出正确答案并说明理由。\n{q}\n{opts}",
               "请回答这道医师资格考试题：\n{q}\n{opts}", "{q}\n{opts}\n请给出答案并解析。"]
_ZH_MULTI = ["以下是一道多选题（可能有多个正确答案），请选出全部正确答案并说明理由。\n{q}\n{opts}",
             "{q}（多选）\n{opts}"]
_EN_PROMPTS = ["{q}\n{opts}", "Answer the following medical exam question and explain why.\n{q}\n{opts}"]


def is_case(question: str) -> bool:
    return bool(CASE_RE.search(question[:40]))


def is_english(text: str) -> bool:
    return len(re.findall(r"[\u4e00-\u9fff]", text)) < 0.05 * max(len(text), 1)


def format_options(options: dict) -> str:
    return "\n".join(f"{k}. {str(v).strip()}" for k, v in options.items())


def answer_text(options: dict, answer: str, english: bool = False) -> str:
    parts = [f"{a}. {str(options[a]).strip()}" for a in answer]
    return ("; " if english else "；").join(parts)


def short_reason(expl: str, limit: int) -> str:
    """The first sentences of an explanation, at most `limit` characters, cut at a sentence end."""
    expl = re.sub(r"\s+", " ", expl).strip()
    if len(expl) <= limit:
        return expl
    cut = max((m.end() for m in re.finditer(r"[。；;！!.](?=\s|$|[^0-9])", expl[:limit])), default=0)
    return expl[:cut].strip() if cut >= limit // 4 else expl[:limit].rstrip("，,、 ") + "……"


def short_reply(opts: dict, ans: str, expl: str, english: bool, limit: int) -> str:
    """The exam answer format of MING-lite and of the evaluator's prompt: the letter first, then a short reason."""
    if english:
        head = f"Answer: {ans} ({answer_text(opts, ans, True)})"
        reason = short_reason(expl, limit) if expl else ""
        return head + (f"\nReason: {reason}" if reason else "")
    head = f"答案：{ans}（{answer_text(opts, ans)}）"
    if expl:
        return head + "\n理由：" + short_reason(expl, limit)
    others = "、".join(k for k in opts if k not in ans)
    return head + f"\n理由：其余选项（{others}）与题干所述情况不符。"


def shuffle_options(opts: dict, ans: str, expl: str, key: str) -> tuple[dict, str, str] | None:
    """The options in an order seeded by `key` (the same on every machine), the answer's new letter(s) and the
    explanation with its option letters renamed; None when the explanation names letters ambiguously. A single
    answer lands on a letter drawn uniformly from the item's letters; multi-answer items get a seeded permutation."""
    if LETTER.search(LETTER_REF.sub("", expl)):
        return None
    letters = list(opts)
    rng = random.Random(stable_id("exam-shuffle", key, n=16))
    if len(ans) == 1:
        target = int(stable_id("exam-answer", key, n=8), 16) % len(letters)
        order = [k for k in letters if k != ans]
        rng.shuffle(order)
        order.insert(target, ans)
    else:
        order = letters[:]
        rng.shuffle(order)
    new = {letters[i]: opts[old] for i, old in enumerate(order)}
    rename = {old: letters[i] for i, old in enumerate(order)}
    expl = LETTER_REF.sub(lambda m: re.sub(r"[A-E]", lambda x: rename.get(x.group(), x.group()), m.group()), expl)
    return new, "".join(sorted(rename[a] for a in ans)), expl


def check_mcq(row: dict) -> tuple[str, dict, str]:
    q, opts, ans = str(row["question"]).strip(), row["options"], str(row["answer"]).strip().upper()
    if not isinstance(opts, dict) or len(opts) < 2:
        raise ValueError("'options' must be an object with at least two options")
    missing = [a for a in ans if a not in opts]
    if not ans or missing:
        raise ValueError(f"answer {ans!r} names option(s) {missing or ans!r} not in options {sorted(opts)}")
    return q, opts, ans


def convert(row: dict, ctx: SourceContext) -> Iterator[dict]:
    o = ctx.options
    q, opts, ans = check_mcq(row)
    case = is_case(q)
    if (o["cases"] == "exclude" and case) or (o["cases"] == "only" and not case):
        raise Skip("case_filter")
    expl = str(row.get("explanation") or "").strip()
    if o["require_explanation"] and not expl:
        raise Skip("no_explanation")
    en = is_english(q)
    key = row.get("id") or q
    shuffled = shuffle_options(opts, ans, expl, key) if o["shuffle_options"] else None
    if shuffled:
        opts, ans, expl = shuffled
    multi = len(ans) > 1
    prompts = _EN_PROMPTS if en else (_ZH_MULTI if multi else _ZH_PROMPTS)
    user = pick(prompts, "exam", key).format(q=q, opts=format_options(opts))
    if o["reply"] == "short":
        reply = short_reply(opts, ans, expl, en, int(o["reason_chars"]))
    elif en:
        reply = f"The answer is {answer_text(opts, ans, True)}."
        reply += f"\n\nExplanation: {expl}" if expl else ""
    else:  # reply: explain
        if multi:
            reply = f"本题有{len(ans)}个正确答案：{answer_text(opts, ans)}。"
        else:
            reply = f"正确答案是 {answer_text(opts, ans)}。"
        if expl:
            reply += f"\n\n解析：{expl}"
        else:
            others = "、".join(k for k in opts if k not in ans)
            reply += f"\n\n其余选项（{others}）与题干所述情况不符。"
    meta = {"answer": ans, "has_explanation": bool(expl), "case_style": case}
    if o["shuffle_options"]:
        meta["options_shuffled"] = shuffled is not None
    for k in ("subject", "department", "difficulty"):
        if row.get(k):
            meta[k] = row[k]
    yield ctx.record([{"role": "user", "content": user}, {"role": "assistant", "content": reply}], key=key,
                     meta=meta)


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    yield from convert_rows(paths, ctx, convert, required=("question", "options", "answer"),
                            types={"question": str, "options": dict, "answer": str})
