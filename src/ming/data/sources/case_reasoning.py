"""Exam case questions (and CMB-Clin-style cases) -> multi-turn "patient information reasoning" conversations,
built deterministically: the user gives the history, the assistant asks for the findings it needs, the user
reveals them, the assistant concludes (and explains, when the source explains).

Input rows: exam MCQs whose stem is a case ("男，65岁。…最可能的诊断是", answer + explanation), or
`{"case": "现病史…体格检查…辅助检查…", "qa": [{"question", "answer"}]}` (CMB-Clin schema).

`voice: clinician` (MING's "多轮病人信息推理与诊断"): a colleague presents the case. `voice: patient` (the
"formatted multi-turn consultation" of MING's USMLE-case row): the patient (or a parent) describes it in the first
person.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from ming.data.sources._common import Skip, SourceContext, convert_rows, pick, prepare
from ming.data.sources.exam_mcq import check_mcq, is_case
from ming.errors import MingError

OPTIONS = {"voice": "clinician"}

FINDING = re.compile(r"查体|体检|检查|实验室|化验|血常规|尿常规|便常规|[BbＢ]超|超声|CT|MRI|X线|胸片|心电图|镜检|活检|病理|"
                     r"\bT\s*\d|\bP\s*\d|\bBP\b|(?<![高低])血压|脉搏|体温|Hb|WBC|白细胞|血红蛋白|血糖|[^主]诉?示[：:]|可见|闻及|触及|叩诊|听诊")
_ASK_ITEMS = [("体格检查", re.compile(r"查体|体检|体温|脉搏|(?<![高低])血压|\bBP\b|\bT\s*\d|\bP\s*\d|闻及|触及|叩诊|听诊|压痛")),
              ("实验室检查", re.compile(r"实验室|化验|血常规|尿常规|便常规|Hb|WBC|白细胞|血红蛋白|血糖|[^a-z]pH|蛋白")),
              ("影像学检查", re.compile(r"[BbＢ]超|超声|CT|MRI|X线|胸片|造影|平片")),
              ("心电图", re.compile(r"心电图|ECG")), ("病理或内镜检查", re.compile(r"活检|病理|镜检|胃镜|肠镜|内镜"))]
_MARKS = re.compile(r"[（(][A-Ea-e]+[对错][）)]|[（(]?(?:故|本题|所以)?(?:答案)?选[A-E]+[）)]?[。．.]?")
_OPEN_CLIN = ["有一位患者，{h}请帮忙分析一下。", "我这里有个病例：{h}你怎么看？", "请协助分析这个病例：{h}"]
_ASK_CLIN = ["要进一步判断，需要了解{items}的结果。请提供一下。", "目前信息还不够。请问{items}有什么发现？",
             "先补充一下{items}的情况，这对判断很关键。"]
_OPEN_PAT = ["医生您好，{h}这是怎么回事？", "医生，{h}想请您看看是什么问题。", "您好，{h}请帮我分析一下。"]
_ASK_PAT = ["我需要了解更多情况：{items}有什么结果吗？", "请问做过哪些检查？特别是{items}，结果怎么样？",
            "为了判断病情，请告诉我{items}的结果。"]
_ASK_HIST_PAT = ["能再具体说说症状的情况和以前的病史吗？", "还有哪些症状？以前得过什么病吗？"]
_ASK_HIST_CLIN = ["请补充一下症状的具体情况和既往史。", "还需要了解更多病史：症状特点、伴随症状和既往史如何？"]
_REVEAL_PAT = ["检查结果是这样的：{f}", "做了检查：{f}", "{f}"]
_CONCL = ["综合病史和检查结果，{c}{a}。", "结合上述信息，{c}{a}。", "根据以上资料，{c}{a}。"]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.findall(r"[^。；;]+[。；;]?", text) if s.strip()]


_QWORDS = re.compile(r"是$|为$|哪|何|什么|应|最|首选|宜|可能")


def split_case(question: str) -> tuple[list[str], list[str], str] | None:
    """(history sentences, finding sentences, question clause)."""
    sents = _sentences(question)
    last = sents[-1].rstrip("。；; ") if sents else ""
    pieces = re.split(r"[，,]", last)
    if len(pieces) > 1 and _QWORDS.search(pieces[-1]):  # "……，最可能的诊断是"
        clause = pieces[-1].strip()
        rest = "，".join(pieces[:-1]).strip()
        body = sents[:-1] + ([rest + "。"] if rest else [])
    else:
        clause, body = last, sents[:-1]
    if len(body) == 1 and len(body[0]) > 30:  # one long sentence: split it at commas
        cl = [c for c in re.split(r"(?<=[，,])", body[0]) if c.strip()]
        body = ["".join(cl[:2])] + ["".join(cl[2:])] if len(cl) > 2 else body
    if body and len(body) > 1 and len(body[0]) <= 12:  # "男，65岁。" belongs to the complaint that follows
        body = [body[0] + body[1]] + body[2:]
    if not body or not clause:
        return None
    history = [s for s in body if not FINDING.search(s)]
    findings = [s for s in body if FINDING.search(s)]
    if not history:
        history, findings = body[:1], body[1:]
    return history, findings, clause


def _first_person(text: str) -> str:
    m = re.match(r"^(?:患者|病人|患儿|某)?[，,]?\s*(男|女)?(?:性)?(?:孩|婴|患儿)?[，,]?\s*(\d+)\s*(岁|个月|月龄|天)[。，,]?",
                 text)
    if not m:
        return re.sub(r"^(?:患者|病人)[，,]?", "我", text)
    sex, age, unit = m.groups()
    child = unit != "岁" or int(age) < 14
    if child:
        who = f"我家孩子，{sex + '，' if sex else ''}{age}{unit}。"
    else:
        who = f"我是{sex}性，{age}岁。" if sex else f"我今年{age}岁。"
    return who + text[m.end():]


def _conclusion_clause(clause: str, voice: str) -> str:
    c = re.sub(r"[（(]\s*[)）]|[？?：:]$", "", clause).strip()
    c = re.sub(r"^(?:此时|该|本例|这位)?(?:患者|病人|患儿)", "患者" if voice == "clinician" else "您", c)
    if voice == "patient":
        c = c.replace("患者", "您").replace("病人", "您").replace("患儿", "孩子")
    return c + ("" if c.endswith(("是", "为", "选", "用")) else "：")


def _explanation(expl: str) -> str:
    expl = _MARKS.sub("", expl or "").strip()
    return expl


def convert_mcq(row: dict, ctx: SourceContext) -> list[dict]:
    voice = ctx.options["voice"]
    q, opts, ans = check_mcq(row)
    if not is_case(q):
        raise Skip("not_a_case")
    parts = split_case(q)
    if parts is None:
        raise Skip("case_too_short")
    history, findings, clause = parts
    key = row.get("id") or q
    if findings:
        items = [name for name, rx in _ASK_ITEMS if any(rx.search(f) for f in findings)] or ["相关检查"]
        reveal = "".join(findings)
    elif len(history) >= 2 or len(re.findall(r"[，,]", history[0])) >= 2:
        items = ["症状的具体情况和既往史"]
        if len(history) == 1:
            cl = [c for c in re.split(r"(?<=[，,])", history[0]) if c.strip()]
            history = ["".join(cl[:2]).rstrip("，,") + "。"]
            reveal = "".join(cl[2:])
        else:
            history, reveal = history[:1], "".join(history[1:])
    else:
        raise Skip("case_too_short")
    h = "".join(history)
    item_text = "、".join(items[:3])
    if voice == "patient":
        user1 = pick(_OPEN_PAT, "open", key).format(h=_first_person(h))
        ask = (pick(_ASK_PAT, "ask", key).format(items=item_text) if findings
               else pick(_ASK_HIST_PAT, "ask", key))
        user2 = pick(_REVEAL_PAT, "rev", key).format(f=reveal) if findings else reveal
    else:
        user1 = pick(_OPEN_CLIN, "open", key).format(h=h)
        ask = (pick(_ASK_CLIN, "ask", key).format(items=item_text) if findings
               else pick(_ASK_HIST_CLIN, "ask", key))
        user2 = reveal
    answer = "、".join(str(opts[a]).strip() for a in ans)
    concl = pick(_CONCL, "concl", key).format(c=_conclusion_clause(clause, voice), a=answer)
    expl = _explanation(str(row.get("explanation") or ""))
    if expl:
        concl += f"\n\n分析：{expl}"
    if voice == "patient":
        concl += "\n\n以上是根据您提供的信息作出的分析，具体诊治请以面诊医生意见为准。"
    msgs = [{"role": "user", "content": user1}, {"role": "assistant", "content": ask},
            {"role": "user", "content": user2}, {"role": "assistant", "content": concl}]
    return [ctx.record(msgs, key=f"{voice}|{key}", meta={"answer": ans, "voice": voice, "asked": items})]


_SECTION = re.compile(r"(体格检查|辅助检查|实验室检查|影像学检查)")


def convert_clin(row: dict, ctx: SourceContext) -> list[dict]:
    case, qa = str(row["case"]), row.get("qa")
    if not isinstance(qa, list) or not qa or not all(isinstance(x, dict) and x.get("question") and x.get("answer")
                                                     for x in qa):
        raise ValueError("'qa' must be a non-empty list of {question, answer}")
    m = _SECTION.search(case)
    if not m or m.start() < 10:
        raise Skip("case_without_findings")
    history, findings = case[:m.start()].strip(), case[m.start():].strip()
    key = row.get("id") or case[:60]
    items = [name for name, rx in _ASK_ITEMS if rx.search(findings)] or ["体格检查和辅助检查"]
    msgs = [{"role": "user", "content": pick(_OPEN_CLIN, "open", key).format(h=history + "\n")},
            {"role": "assistant", "content": pick(_ASK_CLIN, "ask", key).format(items="、".join(items[:3]))},
            {"role": "user", "content": findings + "\n" + str(qa[0]["question"]).strip()},
            {"role": "assistant", "content": str(qa[0]["answer"]).strip()}]
    for item in qa[1:]:
        msgs += [{"role": "user", "content": str(item["question"]).strip()},
                 {"role": "assistant", "content": str(item["answer"]).strip()}]
    return [ctx.record(msgs, key=f"clin|{key}", meta={"title": row.get("title", ""), "voice": "clinician"})]


def convert(row: dict, ctx: SourceContext) -> list[dict]:
    if "case" in row and "qa" in row:
        return convert_clin(row, ctx)
    for k in ("question", "options", "answer"):
        if row.get(k) in (None, "", {}):
            raise ValueError(f"missing field {k!r} (need an exam MCQ or a case with qa)")
    return convert_mcq(row, ctx)


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    if ctx.options["voice"] not in ("clinician", "patient"):
        raise MingError(f"case_reasoning voice {ctx.options['voice']!r} is not one of clinician, patient")
    yield from convert_rows(paths, ctx, convert)
