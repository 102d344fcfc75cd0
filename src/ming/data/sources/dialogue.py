"""Multi-turn consultations (patient/doctor turns) -> conversations that end in an assessment.

Input rows: `{"id", "turns": [{"role": "patient"|"doctor", "text"}], "diagnosis"?, "suggestion"?,
"department"?}` (covid_dialogue_zh/en, cmtmedqa_dialogue, MedDialog-style data).

Leading doctor turns and trailing patient turns are dropped, and the same speaker's consecutive turns merged.
When the source has a diagnosis/suggestion, a closing exchange states it ("综合您描述的情况，初步考虑……");
otherwise the conversation is cut after the last doctor turn that gives an assessment (考虑/可能/诊断/建议 …),
or dropped (`no_assessment`) when none does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from ming.data.sources._common import Skip, SourceContext, convert_rows, pick, prepare
from ming.data.sources.doctor_qa import clean_answer

OPTIONS = {"min_exchanges": 2, "max_exchanges": 12, "closing": True, "expand_single": True,
           "ending": "plain",        # plain | structured: 【初步判断】/【建议】/【何时就医】 closing (MING-lite format)
           "max_questions": None}    # drop dialogues whose doctor asks more than N questions in one turn

# words that state an assessment or advice: the Chinese ones are literals (a fast scan); the English ones are looked
# for only in a text with Latin letters
_ASSESS_ZH = re.compile(r"考虑|可能|诊断|判断|印象|属于|应该是|提示|怀疑|建议|排除|不像|符合")
_ASSESS_EN = re.compile(r"\b(?:consider|likely|probabl|possib|diagnos|suggest|recommend|advise|should|rule out|may be|"
                        r"could be|depends)", re.I)
_ASSESS_EN_LOWER = re.compile(_ASSESS_EN.pattern)  # on the lower-cased text (3x faster than re.I)
_LATIN = re.compile(r"[A-Za-z]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_QUESTION = re.compile(r"[？?]\s*$|[吗呢么][？?。]?\s*$")
_STOP = re.compile(r"[。！!？?\n]")


def gives_assessment(text: str) -> bool:
    """Does a doctor turn state an assessment or advice (not only ask questions)? True when a sentence (text up to
    and with 。！？, or up to a line end) holds an assessment word and is not a question."""
    scans = [_ASSESS_ZH.finditer(text)]
    if _LATIN.search(text):
        low = text.lower()  # same length: the same positions (else the case-blind pattern on the text itself)
        scans.append(_ASSESS_EN_LOWER.finditer(low) if len(low) == len(text) else _ASSESS_EN.finditer(text))
    for scan in scans:
        for m in scan:
            start = max(text.rfind(c, 0, m.start()) for c in "。！!？?\n") + 1
            stop = _STOP.search(text, m.end())
            end = len(text) if stop is None else stop.start() if stop.group() == "\n" else stop.end()
            if not _QUESTION.search(text, start, end):
                return True
    return False


_FORM_DROP = re.compile(r"^(?:已就诊医院及科室|就诊医院|医院)[：:].*$", re.M)
_DATE_STAMP = re.compile(r"[（(]\d{4}-\d{2}-\d{2}填写[)）]")
_CLOSE_ZH = ["那我这是什么情况？需要怎么处理？", "请您帮我总结一下病情和建议。", "医生，您看我这到底是什么问题，接下来该怎么办？",
             "好的，那您的诊断和建议是什么？"]
_CLOSE_EN = ["So what do you think it is, and what should I do?", "Could you sum up your assessment and advice?"]
_OPEN_DIAG = ["综合您描述的情况，初步考虑：{d}", "根据以上交流，我的初步判断是：{d}", "结合病史和症状，目前考虑：{d}"]
_WHEN_ZH = ["如出现高热不退、呼吸困难、胸痛、意识改变或症状明显加重，请立即就医或拨打120；否则建议近期到{dept}面诊。",
            "若症状持续不缓解或加重，或出现呼吸困难、剧烈疼痛、出血等情况，请及时就医；一般情况建议尽快到{dept}就诊。"]


def count_questions(text: str) -> int:
    """Questions a doctor turn asks: question marks (a run such as "？？" counts once)."""
    return len(re.findall(r"[？?]+", text))


def structured_ending(diag: str, sugg: str, dept: str, key: str) -> str:
    """MING-lite's closing: an assessment, advice and when to see a doctor, each under its own label."""
    parts = []
    if diag:
        parts.append("【初步判断】" + pick(_OPEN_DIAG, "diag", key).format(d=diag.rstrip("。")) + "。")
    if sugg:
        parts.append("【建议】" + sugg)
    where = f"{dept}门诊" if dept and len(dept) <= 12 else "医院相关科室"
    parts.append("【何时就医】" + pick(_WHEN_ZH, "when", key).format(dept=where))
    parts.append("以上为线上初步判断，不能替代医生面诊。")
    return "\n".join(parts)


_BLANK_LINES = re.compile(r"\n{2,}")


def _patient_text(text: str) -> str:
    if "医院" in text:  # every _FORM_DROP line holds 医院, every _DATE_STAMP 填写
        text = _FORM_DROP.sub("", text)
    if "填写" in text:
        text = _DATE_STAMP.sub("", text)
    if "\n\n" in text:
        text = _BLANK_LINES.sub("\n", text)
    return text.strip()


_FIRST_KEYS = ("疾病", "病情描述", "希望获得的帮助", "主诉")
_ASK_ZH = ["这种情况持续多久了？", "了解了。请问最近用过什么药吗？", "为了更好地判断，请问这是什么时候开始的？",
           "请问以前有没有类似的情况或其他慢性病？"]
_ASK_EN = ["Could you tell me more? How long has this been going on, and do you have any other symptoms or "
           "medical history?", "I see. Can you give me a few more details about your symptoms and history?"]


def split_patient(text: str) -> tuple[str, str] | None:
    """Split one patient message into what is said first and what is revealed when the doctor asks."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    keyed = [re.match(r"^([^：:]{1,10})[：:]", ln) for ln in lines]
    if sum(1 for k in keyed if k) >= 3:  # a consultation form: 疾病：… 病情描述：… 患病多久：…
        first = [ln for ln, k in zip(lines, keyed) if not k or k.group(1).strip() in _FIRST_KEYS]
        rest = [ln for ln, k in zip(lines, keyed) if k and k.group(1).strip() not in _FIRST_KEYS]
        if first and rest:
            return "\n".join(first), "\n".join(rest)
    sents = re.findall(r"[^。！？!?.\n]+[。！？!?.\n]*", text)
    if len(sents) < 3 or len(text) < 40:
        return None
    acc, cut = 0, 1
    for i, s_ in enumerate(sents):
        acc += len(s_)
        if acc >= 0.4 * len(text):
            cut = max(1, i)
            break
    first, rest = "".join(sents[:cut]).strip(), "".join(sents[cut:]).strip()
    return (first, rest) if first and rest else None


_LABELS: dict[str, re.Pattern] = {}


def _strip_label(text: str, labels: tuple[str, ...]) -> str:
    text = text.strip()
    for lab in labels:
        if lab in text:
            pat = _LABELS.get(lab) or _LABELS.setdefault(lab, re.compile(rf"^{lab}\s*[：:]\s*"))
            text = pat.sub("", text)
    return text.strip()


def convert(row: dict, ctx: SourceContext) -> Iterator[dict]:
    o = ctx.options
    turns = row["turns"]
    if not isinstance(turns, list):
        raise ValueError("'turns' must be a list")
    msgs: list[dict] = []
    for t in turns:
        if not isinstance(t, dict) or t.get("role") not in ("patient", "doctor") or not isinstance(t.get("text"), str):
            raise ValueError("each turn needs role patient|doctor and a text string")
        role = "user" if t["role"] == "patient" else "assistant"
        text = _patient_text(t["text"]) if role == "user" else clean_answer(t["text"])
        if not text or (role == "assistant" and len(text) < 4) or (role == "user" and len(text) < 2):
            continue  # "好" / "嗯": an acknowledgement, not a turn; the patient's messages around it are merged
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] += "\n" + text
        else:
            msgs.append({"role": role, "content": text})
    while msgs and msgs[0]["role"] != "user":
        msgs.pop(0)
    while msgs and msgs[-1]["role"] != "assistant":
        msgs.pop()
    if not msgs:
        raise Skip("no_exchange")
    english = _HAN.search(msgs[0]["content"]) is None
    if o["expand_single"] and len(msgs) == 2:
        parts = split_patient(msgs[0]["content"])
        if parts:
            ask = pick(_ASK_EN if english else _ASK_ZH, "ask", row.get("id") or parts[0])
            msgs = [{"role": "user", "content": parts[0]}, {"role": "assistant", "content": ask},
                    {"role": "user", "content": parts[1]}, msgs[1]]
    diag = _strip_label(str(row.get("diagnosis") or ""), ("病情摘要及初步印象", "初步印象", "疾病诊断", "诊断"))
    sugg = _strip_label(str(row.get("suggestion") or ""), ("总结建议", "建议"))
    ending = "closing"
    if o["closing"] and (diag or sugg) and len(msgs) // 2 < o["max_exchanges"]:
        key = row.get("id") or msgs[0]["content"]
        close = pick(_CLOSE_EN if english else _CLOSE_ZH, "close", key)
        if o["ending"] == "structured" and not english:
            reply = structured_ending(diag, sugg, str(row.get("department") or "").strip(), key)
        else:
            parts = []
            if diag:
                parts.append(pick(_OPEN_DIAG, "diag", key).format(d=diag.rstrip("。")) + "。")
            if sugg:
                parts.append(f"建议：{sugg}")
            parts.append("以上为线上初步判断，请结合线下面诊和检查结果由医生确诊。")
            reply = "\n".join(parts)
        msgs += [{"role": "user", "content": close}, {"role": "assistant", "content": reply}]
    else:
        # cut after the last doctor turn that gives an assessment
        last = next((i for i in range(len(msgs) - 1, -1, -1)
                     if msgs[i]["role"] == "assistant" and gives_assessment(msgs[i]["content"])), -1)
        if last < 0:
            raise Skip("no_assessment")
        msgs = msgs[:last + 1]
        ending = "assessment_turn"
    n_ex = len(msgs) // 2
    if n_ex < o["min_exchanges"]:
        raise Skip("too_few_exchanges")
    if n_ex > o["max_exchanges"]:
        msgs = msgs[:2 * o["max_exchanges"]]
        if not gives_assessment(msgs[-1]["content"]):
            raise Skip("no_assessment")
    if o["ending"] == "structured" and ending == "assessment_turn" and not english and "【何时就医】" not in msgs[-1]["content"]:
        key = row.get("id") or msgs[0]["content"]
        dept = str(row.get("department") or "").strip()
        where = f"{dept}门诊" if dept and len(dept) <= 12 else "医院相关科室"
        msgs[-1] = {"role": "assistant", "content": msgs[-1]["content"].rstrip() + "\n【何时就医】"
                    + pick(_WHEN_ZH, "when", key).format(dept=where)}
    if o["max_questions"] is not None:
        asked = max((count_questions(m["content"]) for m in msgs[:-1] if m["role"] == "assistant"), default=0)
        if asked > int(o["max_questions"]):
            raise Skip("too_many_questions")
    meta = {"exchanges": len(msgs) // 2, "ending": ending}
    if row.get("department"):
        meta["department"] = str(row["department"])
    yield ctx.record(msgs, key=row.get("id") or msgs[0]["content"], meta=meta)


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    yield from convert_rows(paths, ctx, convert, required=("turns",), types={"turns": list})
