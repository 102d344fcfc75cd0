"""Simulated-patient consultation (after the MING team's "Automatic Interactive Evaluation").

A case has a chief complaint the patient opens with, hidden findings revealed only when the doctor
asks about them, and (usually) the diagnosis the real doctor gave. The doctor model talks with a
patient simulator for up to N turns; then we score diagnosis accuracy against the case, the share
of hidden findings the doctor asked about (coverage), and the turns used.

Two simulators: `LLMPatient` (any client; answers in JSON naming the findings it revealed, parse
failures counted, with the rule-based answer as fallback for that turn) and `RulePatient` (no
second model: keyword categories and shared character bigrams decide what a question asks about)."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field

# -- cases ----------------------------------------------------------------------------------------


@dataclass
class Finding:
    id: int
    category: str  # symptom | duration | medication | allergy | history | visit | exam_physical | exam_lab | dialogue
    text: str


@dataclass
class Case:
    id: str
    chief_complaint: str
    findings: list[Finding]
    diagnosis: str | None = None
    department: str | None = None
    source: str = ""


HAODF_FIELDS = {  # haodf.com consultation form fields -> finding category (None: not a finding)
    "疾病": None,  # the patient's own guess of the disease: it would leak the diagnosis
    "病情描述": "symptom",
    "希望获得的帮助": None,
    "患病多久": "duration",
    "已就诊医院及科室": "visit",
    "用药情况": "medication",
    "过敏史": "allergy",
    "既往病史": "history",
    "怀孕情况": "history",
}
_FIELD_RE = re.compile(r"(" + "|".join(HAODF_FIELDS) + r")\s*[:：]")
_CLAUSE_SPLIT = re.compile(r"[，,。；;！!？?\n]+")


def _clean(text: str) -> str:
    text = re.sub(r"（\d{4}-\d{2}-\d{2}填写）", "", text)
    return re.sub(r"\s+", " ", text).strip(" ，,。")


def parse_haodf(text: str) -> dict[str, str]:
    """Split a haodf.com patient form ("疾病：… 病情描述：… 患病多久：…") into its fields."""
    marks = list(_FIELD_RE.finditer(text))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out[m.group(1)] = _clean(text[m.end():end])
    return out


_NOT_FINDING = re.compile(r"(吗|呢|么|？|\?)$|谢|明白|好的|知道了|怎么办|怎么解决|怎么治|请问|医生|大夫|^(你|您)好|能不能|可不可以")


def is_statement(c: str) -> bool:
    """A clause worth hiding as a finding: not a question, greeting or thanks."""
    return len(c) >= 3 and not _NOT_FINDING.search(c)


def opening_of(parts: list[str]) -> tuple[str, list[str]]:
    """The chief complaint: the first statement clauses (at least 8 characters); the rest stay hidden."""
    parts = [p for p in parts if not re.search(r"医生|大夫|(你|您)好|谢谢", p)]
    chief = []
    while parts and sum(len(c) for c in chief) < 8:
        chief.append(parts.pop(0))
    return "，".join(chief), parts


def clauses(text: str, min_len: int = 2) -> list[str]:
    """Short statements of a text: split on punctuation, tiny pieces joined to the previous one."""
    out: list[str] = []
    for piece in _CLAUSE_SPLIT.split(text or ""):
        piece = piece.strip()
        if not piece:
            continue
        if out and len(piece) < 4:
            out[-1] += "，" + piece
        elif len(piece) >= min_len:
            out.append(piece)
    return out


def case_from_haodf(row: dict, max_findings: int = 12, dialogue_findings: int = 6) -> Case | None:
    """A dialogue-schema row whose first patient turn is a haodf form (meddialog_cn_100,
    covid_dialogue_zh). Later patient statements become findings too (questions are skipped)."""
    turns = row.get("turns") or []
    if not turns or turns[0].get("role") != "patient":
        return None
    fields = parse_haodf(turns[0]["text"])
    desc = clauses(fields.get("病情描述", "") or (turns[0]["text"] if not fields else ""))
    if not desc:
        return None
    chief, desc_rest = opening_of(desc)
    findings: list[Finding] = []

    def add(cat: str, text: str):
        if text and text not in ("无", "不清楚", "没有") and len(findings) < max_findings:
            findings.append(Finding(len(findings) + 1, cat, text[:80]))

    for c in desc_rest:
        if is_statement(c):
            add(category_of(c, "symptom"), c)
    for name, cat in HAODF_FIELDS.items():
        if cat and cat != "symptom" and fields.get(name):
            add(cat, fields[name])
    n_dialogue = 0
    for t in turns[1:]:
        if t.get("role") != "patient" or n_dialogue >= dialogue_findings:
            continue
        for c in clauses(t["text"]):
            if n_dialogue >= dialogue_findings:
                break
            if not is_statement(c):
                continue
            add(category_of(c, "dialogue"), c)
            n_dialogue += 1
    return Case(id=row["id"], chief_complaint=chief, findings=findings, diagnosis=usable_diagnosis(row.get("diagnosis")),
                department=row.get("department"), source=row.get("source", ""))


def category_of(clause: str, default: str) -> str:
    if re.search(r"\d+\s*(岁|个月大)|^[^，,]{0,6}[，,]\s*[男女][，,]|^[男女][，,]", clause):
        return "profile"
    if "既往" in clause or "病史" in clause:
        return "history"
    return default


JUNK_DIAGNOSES = {"已告知", "无", "同上", "见上", "不详", "暂无"}


def usable_diagnosis(dx: str | None) -> str | None:
    if not dx:
        return None
    dx = _clean(dx)
    return None if len(dx) < 2 or dx in JUNK_DIAGNOSES else dx


_CMB_SECTIONS = (("现病史", "history"), ("体格检查", "exam_physical"), ("辅助检查", "exam_lab"))


def case_from_cmb_clin(row: dict, max_findings: int = 14) -> Case | None:
    """A CMB-Clin clinical case: 主诉 opens; the history, physical exam and test results are hidden."""
    text = row.get("case", "")
    idx = {name: text.find(name) for name, _ in _CMB_SECTIONS}
    parts = {}
    order = sorted((i, n) for n, i in idx.items() if i >= 0)
    for j, (i, n) in enumerate(order):
        end = order[j + 1][0] if j + 1 < len(order) else len(text)
        parts[n] = text[i + len(n):end]
    hist = parts.get("现病史", text)
    m = re.search(r"主诉\s*\n?\s*(.+)", hist)
    chief = _clean(m.group(1)) if m else (clauses(hist)[0] if clauses(hist) else "")
    summary = re.sub(r"主诉[\s\S]*", "", hist)
    summary = re.sub(r"[（(]\d[)）]\s*病史摘要", "", summary)
    findings: list[Finding] = []
    for name, cat in (("现病史", "symptom"), ("体格检查", "exam_physical"), ("辅助检查", "exam_lab")):
        src = summary if name == "现病史" else parts.get(name, "")
        src = re.sub(r"[（(]\d[)）]\s*[^\n]{0,12}\n", "\n", src)  # "(1)实验室检查" sub-headings
        for c in clauses(src):
            if len(findings) >= max_findings:
                break
            if name == "现病史" and (c in chief or re.match(r"^(病人|患者)[，,]?\s*[男女]", c)):
                continue
            findings.append(Finding(len(findings) + 1, category_of(c, cat), c[:80]))
    dx = None
    for qa in row.get("qa") or []:
        mm = re.search(r"诊断\s*[:：]\s*([^\n。；;]+)", qa.get("answer", ""))
        if mm:
            dx = mm.group(1)
            break
    if not dx and "-" in row.get("title", ""):
        dx = row["title"].split("-", 1)[1]
    if not chief:
        return None
    return Case(id=row["id"], chief_complaint=chief, findings=findings, diagnosis=usable_diagnosis(dx),
                source=row.get("source", ""))


def case_from_dialogue(row: dict, max_findings: int = 10) -> Case | None:
    """A free multi-turn dialogue without a form (cmtmedqa_dialogue): the first sentence opens, the
    patient's other statements are the hidden findings. These rows have no diagnosis."""
    turns = row.get("turns") or []
    if not turns or turns[0].get("role") != "patient":
        return None
    chief, first_rest = opening_of(clauses(turns[0]["text"]))
    if not chief:
        return None
    findings: list[Finding] = []
    rest = first_rest + [c for t in turns[1:] if t.get("role") == "patient" for c in clauses(t["text"])]
    for c in rest:
        if len(findings) >= max_findings:
            break
        if not is_statement(c):
            continue
        findings.append(Finding(len(findings) + 1, category_of(c, "symptom"), c[:80]))
    return Case(id=row["id"], chief_complaint=chief, findings=findings, diagnosis=usable_diagnosis(row.get("diagnosis")),
                department=row.get("department"), source=row.get("source", ""))


# -- the rule-based patient ----------------------------------------------------------------------
QUESTION_CATEGORIES = {
    "profile": r"年龄|多大|几岁|性别|男.*女|孩子多|宝宝多",
    "duration": r"多久|多长时间|几天|几周|几个月|什么时候|何时|持续|开始的|起病|多长",
    "medication": r"药|治疗过|用过|吃过|服用|输液|打针|处理过",
    "allergy": r"过敏",
    "history": r"既往|以前|病史|基础病|慢性病|得过|手术|家族|家里人|高血压|糖尿病",
    "visit": r"医院|就诊|看过|去过|就医",
    "exam_physical": r"查体|体格检查|体温|血压|心率|脉搏|压痛|听诊|触诊|体检|检查",
    "exam_lab": r"检查|化验|血常规|尿常规|CT|B超|超声|X线|片子|拍片|结果|指标|报告|核酸|胸片",
}
GENERIC_QUESTION = r"其他|还有|别的|哪里不舒服|具体|详细|描述|症状|情况|怎么了|表现"
STOP_BIGRAMS = {"你好", "请问", "有没", "没有", "什么", "怎么", "是否", "情况", "一下", "现在", "医生", "感觉", "时候",
                "有什", "是不", "不是", "可以", "哪些", "一些", "这个", "那个", "您的", "你的", "我的", "自己", "目前",
                "出现", "最近", "之前", "以前", "请您", "告诉", "是什", "么症", "症状", "情况", "还有", "其他"}


def bigrams(text: str) -> set[str]:
    t = re.sub(r"[^\u4e00-\u9fffA-Za-z0-9]", "", unicodedata.normalize("NFKC", text or "")).lower()
    return {t[i:i + 2] for i in range(len(t) - 1)}


RULE_PATIENT_VERSION = "rule-v2"
_ASKING = re.compile(r"[？?]|吗|呢|什么|多久|多长|几[天次个岁]|有没有|是否|哪|怎么样|如何|请(?:问|描述|说)")


def questions_in(text: str) -> str:
    """The sentences of the doctor's message that ask something (advice and statements reveal nothing)."""
    parts = re.split(r"(?<=[。！!？?\n；;])", text or "")
    return "".join(p for p in parts if _ASKING.search(p))


class RulePatient:
    """Reveals a finding when a question in the doctor's message asks about its category (duration,
    medication, allergy, history, exams …) or shares a content bigram with it ("咳嗽" asked,
    "咳嗽有痰" told). A generic question ("还有其他症状吗") reveals the next unrevealed symptom.
    Statements and advice reveal nothing. At most 3 findings per turn."""

    kind = "rule"

    def __init__(self, case: Case, per_turn: int = 3):
        self.case = case
        self.per_turn = per_turn
        self.revealed: set[int] = set()
        self.parse_failures = 0
        self.fallbacks = 0

    def opening(self) -> str:
        return f"医生您好，{self.case.chief_complaint}。"

    def match(self, doctor_text: str) -> list[Finding]:
        question = questions_in(doctor_text)
        if not question:
            return []
        q_bi = bigrams(question) - STOP_BIGRAMS
        hits: list[tuple[int, Finding]] = []
        cats = {c for c, pat in QUESTION_CATEGORIES.items() if re.search(pat, question, re.IGNORECASE)}
        for f in self.case.findings:
            if f.id in self.revealed:
                continue
            score = 2 * len(q_bi & bigrams(f.text)) + (3 if f.category in cats else 0)
            if score:
                hits.append((score, f))
        hits.sort(key=lambda x: (-x[0], x[1].id))
        chosen = [f for _, f in hits[: self.per_turn]]
        if not chosen and re.search(GENERIC_QUESTION, question):
            rest = [f for f in self.case.findings if f.id not in self.revealed and f.category in ("symptom", "dialogue")]
            chosen = rest[:1]
        return chosen

    def reply(self, history: list[dict], doctor_text: str) -> tuple[str, list[int]]:
        chosen = self.match(doctor_text)
        if not chosen:
            if not questions_in(doctor_text):
                return "好的。", []
            return "这个我不太清楚，没有注意到别的情况。", []
        for f in chosen:
            self.revealed.add(f.id)
        return "，".join(f.text for f in chosen) + "。", [f.id for f in chosen]


# -- the LLM patient -----------------------------------------------------------------------------
PATIENT_PROMPT_VERSION = "patient-v1"
PATIENT_PROMPT = """你在扮演一名正在线上问诊的患者。你已经对医生说了：“{opening}”
你的其他病情资料如下（医生看不到，按编号）：
{findings}
规则：
1. 只回答医生这一次问到的内容，只透露与问题相关的条目，不要主动说出没被问到的情况；
2. 你不知道自己得了什么病，不要说出任何疾病名称或诊断；
3. 资料里没有的情况，回答“不清楚”或“没有”；说话口语化、简短。
只输出一行 JSON，不要输出别的：{{"reply": "你对医生说的话", "revealed": [本次透露的条目编号]}}"""


def parse_patient_json(text: str, n_findings: int) -> tuple[str, list[int]] | None:
    m = re.search(r"\{.*\}", text or "", re.DOTALL)
    if not m:
        return None
    try:
        data = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("reply"), str) or not data["reply"].strip():
        return None
    ids = data.get("revealed", [])
    if not isinstance(ids, list):
        return None
    valid = sorted({int(i) for i in ids if isinstance(i, (int, str)) and str(i).isdigit() and 1 <= int(i) <= n_findings})
    return data["reply"].strip(), valid


class LLMPatient(RulePatient):
    """A second model plays the patient. A reply that is not the asked JSON is retried up to
    `retries` times (new seed), then the rule-based answer is used for that turn; both counted."""

    kind = "llm"

    def __init__(self, case: Case, client, gen, retries: int = 2):
        super().__init__(case)
        self.client = client
        self.gen = gen
        self.retries = retries

    def system(self) -> str:
        listing = "\n".join(f"{f.id}. {f.text}" for f in self.case.findings) or "（无）"
        return PATIENT_PROMPT.format(opening=self.opening(), findings=listing)

    def reply(self, history: list[dict], doctor_text: str) -> tuple[str, list[int]]:
        # from the patient's side the doctor is the "user"
        msgs = [{"role": "system", "content": self.system()}]
        for h in history[1:]:  # history[0] is the opening, already in the system prompt
            msgs.append({"role": "user" if h["role"] == "doctor" else "assistant", "content": h["text"]})
        msgs.append({"role": "user", "content": doctor_text})
        for attempt in range(self.retries + 1):
            seed = None if self.gen.seed is None else self.gen.seed + attempt
            out = self.client.chat(msgs, self.gen.replace(seed=seed))
            parsed = parse_patient_json(out.model_text or out.text, len(self.case.findings))
            if parsed:
                text, ids = parsed
                self.revealed.update(ids)
                return text, ids
            self.parse_failures += 1
        self.fallbacks += 1
        return super().reply(history, doctor_text)


# -- the consultation -------------------------------------------------------------------------------
DOCTOR_PROMPT_VERSION = "doctor-v2"
# The doctor gets ming's own consult-mode system prompt (ask one question at a time, then assess).
# Nothing in it mentions a diagnosis format: only the final forced question asks for "诊断：".
FINAL_QUESTION = "医生，请根据以上情况直接告诉我，我最可能是什么病？请以“诊断：”开头回答。"
CONCLUSION_RE = re.compile(r"诊断\s*[:：为是]|初步诊断|最可能(?:的)?(?:诊断|是)|考虑(?:为|是)")
QUESTION_RE = re.compile(r"[？?]|吗[。\s]*$|呢[。\s]*$")


def concluded(text: str) -> bool:
    """The doctor states a diagnosis and asks nothing more."""
    return bool(CONCLUSION_RE.search(text or "")) and not QUESTION_RE.search(text or "")


def diagnosis_terms(gold: str) -> list[str]:
    parts = re.split(r"[，,；;、。/\s？?（）()]|及|和|或|合并|伴有|伴", gold)
    out = []
    for p in parts:
        p = re.sub(r"^(初步诊断|诊断|考虑为|考虑|疑似|可能为|可能)", "", p.strip())
        p = re.sub(r"(可能性大|可能|待排|待查|待除外)$", "", p)
        if len(p) >= 2 and p not in out:
            out.append(p)
    return out


def diagnosis_hit(text: str, gold: str | None) -> tuple[bool | None, str | None]:
    """Lexical diagnosis match: a term of the gold diagnosis appears in the doctor's conclusion, or
    (for terms of 3+ characters) at least 60 % of its character bigrams do. None when no gold."""
    if not gold:
        return None, None
    norm = unicodedata.normalize("NFKC", text or "")
    t_bi = bigrams(norm)
    for term in diagnosis_terms(gold):
        if term in norm:
            return True, term
        tb = bigrams(term)
        if len(term) >= 3 and tb and len(tb & t_bi) / len(tb) >= 0.6:
            return True, term
    return False, None


@dataclass
class ConsultResult:
    transcript: list[dict]
    turns: int
    concluded_early: bool
    revealed: list[int]
    coverage: float | None
    final_text: str
    diagnosis_hit: bool | None
    matched_term: str | None
    patient_parse_failures: int = 0
    patient_fallbacks: int = 0
    safety_events: list = field(default_factory=list)
    questions_asked: int = 0  # non-final doctor turns that ask something (`questions_in`)
    non_final_turns: int = 0
    doctor_kinds: list = field(default_factory=list)  # the consultation controller's action per turn (local engine)


def consult(doctor, patient: RulePatient, case: Case, gen, max_turns: int = 4,
            system: str | None = None, mode: str | None = "consult") -> ConsultResult:
    """Run one consultation. The doctor speaks up to `max_turns` times; when it has not concluded
    by its last turn, the patient asks for the diagnosis directly and that answer is the last turn.
    Each doctor turn is a `mode` turn (a local engine then runs the consultation controller, unless
    its client turned the "consult" stage off)."""
    transcript = [{"role": "patient", "text": patient.opening()}]
    safety_events = []
    kinds: list = []
    forced = False
    final = ""
    for turn in range(1, max_turns + 1):
        msgs = [{"role": "system", "content": system}] if system else []
        for t in transcript:
            msgs.append({"role": "user" if t["role"] == "patient" else "assistant", "content": t["text"]})
        r = doctor.chat(msgs, gen, mode=mode)
        final = r.text
        kinds.append(((r.info or {}).get("consult") or {}).get("kind"))
        transcript.append({"role": "doctor", "text": r.text})
        if r.safety:
            safety_events.append({"turn": turn, "action": r.safety.get("action")})
        if concluded(r.text) or turn == max_turns:
            break
        reply, ids = patient.reply(transcript[:-1], r.text)
        if turn == max_turns - 1:  # the doctor's last turn: ask for the diagnosis outright
            reply, forced = reply + FINAL_QUESTION, True
        transcript.append({"role": "patient", "text": reply, "revealed": ids})
    early = concluded(final) and not forced
    turns = sum(1 for t in transcript if t["role"] == "doctor")
    n = len(case.findings)
    hit, term = diagnosis_hit(final, case.diagnosis)
    non_final = [t["text"] for t in transcript if t["role"] == "doctor"][:-1]
    return ConsultResult(transcript=transcript, turns=turns, concluded_early=early,
                         revealed=sorted(patient.revealed), coverage=(len(patient.revealed) / n) if n else None,
                         final_text=final, diagnosis_hit=hit, matched_term=term,
                         patient_parse_failures=patient.parse_failures, patient_fallbacks=patient.fallbacks,
                         safety_events=safety_events, questions_asked=sum(1 for t in non_final if questions_in(t)),
                         non_final_turns=len(non_final), doctor_kinds=kinds if any(kinds) else [])
