"""The next question: the history item that matters most and is still missing, or the symptom whose
answer best separates the leading candidates (expected information gain). One slot per turn, each
with a Chinese template (used when the model does not phrase it)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ming.consult.facts import LATE_PERIOD
from ming.consult.rank import P_HIT, Candidate, p_miss
from ming.consult.state import ConsultState
from ming.kb.store import KB

TEMPLATES = {
    "chief": "请问您哪里不舒服，主要是什么症状？",
    "duration": "这种情况持续多久了，是突然出现的还是慢慢开始的？",
    "temperature": "量过体温吗，最高体温是多少度？",
    "site": "具体是哪个部位不舒服，比如上腹、肚脐周围、右下腹，还是别的位置？",
    "character": "是什么样的疼，比如胀痛、绞痛、刺痛，是一阵一阵的还是一直疼？",
    "trigger": "在什么情况下会加重或缓解，比如吃饭、活动、休息或按压之后？",
    "profile": "请问患者的年龄和性别？",
    "profile_sex": "请问患者的性别是男还是女？",
    "profile_age": "请问患者今年多大年龄？",
    "pregnancy": "方便问一下，目前有没有怀孕的可能，末次月经是什么时候？",
    "medication": "这次有没有吃过什么药或做过什么处理，效果怎么样？",
    "history": "以前有没有高血压、糖尿病等慢性病或做过手术，平时在吃什么药？",
    "allergy": "有没有对什么药物或食物过敏？",
    "exams": "之前去医院看过吗，做过什么检查，结果怎么样？",
    "late_period": "月经推迟首先要排除怀孕：最近有没有同房，用早孕试纸测过吗？",
    "hydration": "孩子今天小便多不多（尿布湿得勤不勤），哭的时候有没有眼泪，精神和喝水、吃奶怎么样？",
    "more": "除了这些，还有其他不舒服的地方吗？",
}
# plain words for canonical symptoms in questions (the canonical name follows in brackets)
PLAIN = {"发热": "发烧", "腹泻": "拉肚子", "咽痛": "嗓子疼", "流涕": "流鼻涕", "食欲不振": "食欲不好", "呼吸困难": "喘不上气",
         "心悸": "心慌", "下肢水肿": "腿肿", "压痛": "按压时更疼", "反跳痛": "按下去再松手时疼得更厉害", "畏寒": "怕冷",
         "咯血": "咳血", "嗳气": "打嗝", "鼻塞": "鼻子不通气", "瘙痒": "发痒", "尿痛": "小便疼", "多汗": "出汗多",
         "乏力": "没力气", "腹胀": "肚子胀", "眩晕": "天旋地转的晕", "肠鸣": "肚子咕噜咕噜响", "畏光": "怕光"}
# the site question for pain elsewhere than the belly (TEMPLATES["site"] is the abdominal one)
SITE_BY_AREA = (
    (re.compile(r"头"), "头哪个部位疼，比如前额、两侧太阳穴、后脑勺，还是整个头都疼？"),
    (re.compile(r"胸"), "胸口哪个位置疼，比如正中间、左边还是右边，疼的时候会不会传到肩膀、后背或胳膊？"),
    (re.compile(r"腰|背"), "腰背具体哪个位置疼，是一侧还是两侧，会不会往腿上或小肚子放射？"),
    (re.compile(r"关节|肩|颈"), "具体是哪个部位或哪个关节疼，一处还是好几处？"),
)
PAIN_LIKE = re.compile(r"(?:腹|胸|头|腰|背|胃|关节|肩|颈)[^，]{0,3}痛")
# KB names a patient cannot answer about (lab values, signs, diagnoses)
_NOT_ASKABLE = re.compile(r"^(?:小儿|婴儿|新生儿|婴幼儿|老年|妊娠|产后|女性|男性|孕妇|儿童)|过速|过缓|心动|细胞|蛋白|增高|升高|降低|减少|异常|综合征|炎|癌|瘤|症$|病$|杂音|阻滞|衰竭|障碍|肿大|积液|失常|"
                          r"休克|昏迷|抽搐|坏死|充血|感染|损害|亢进|低下|缺氧|缺血|梗死|栓塞|罗音|啰音|[A-Za-z]|"
                          r"硬化|钙化|增生|萎缩|狭窄|扩张|粘连|囊肿|结节|息肉|肥厚|变性|退化|退变|阳性|阴性|试验|征$|体征|"
                          r"火$|上火|湿|瘀|血虚|气虚|阴虚|阳虚|气滞|痰饮|寒证|热证|^肺热|^胃热")  # TCM patterns are not symptoms
SYMPTOM_QUESTIONS_MAX = 4
# a complaint whose differential depends on sex (and, in a woman of 12–55, on a possible pregnancy): lower-abdominal
# or pelvic pain, vaginal bleeding — ectopic pregnancy, ovarian torsion, PID belong in a woman's list
PELVIC = re.compile(r"下腹|小腹|盆腔|阴道[^，,。]{0,2}(?:出血|流血)|会阴|腹股沟|痛经|经期")
PELVIC_SITES = {"下腹", "右下腹", "左下腹"}
MIN_GAIN = 0.01


@dataclass
class Question:
    slot: str  # "duration" … or "symptom:发热" or "clarify:发热"
    text: str
    reason: str
    gain: float = 0.0


def symptom_question(canonical: str) -> str:
    plain = PLAIN.get(canonical)
    name = f"{plain}（{canonical}）" if plain else canonical
    return f"请问有没有{name}？"


def site_question(state: ConsultState) -> str:
    """Where it hurts, asked for the body area the pain is in (the belly unless the pain is elsewhere)."""
    pains = [s for s in state.present() if PAIN_LIKE.search(s)]
    if any(re.search(r"腹|胃", s) for s in pains):
        return TEMPLATES["site"]
    for rx, text in SITE_BY_AREA:
        if any(rx.search(s) for s in pains):
            return text
    return TEMPLATES["site"]


def pelvic_complaint(state: ConsultState) -> bool:
    """Lower-abdominal or pelvic pain, or vaginal bleeding, among the present findings or the sites said."""
    return bool(PELVIC_SITES & set(state.sites)) or any(PELVIC.search(s) for s in state.present())


def _who(kb: KB, name: str) -> set[str]:
    """The groups a disease is of or mostly affects (children, the elderly, pregnancy, one sex)."""
    d = kb.disease(name) or {}
    return set(d.get("groups", ())) | set(d.get("mostly", ()))


def profile_matters(state: ConsultState, kb: KB, cands: list[Candidate], k: int = 3) -> bool:
    """The leading candidates depend on who the patient is: one of the top k is a disease of one sex (sex
    unknown) or of children or the elderly (age unknown)."""
    who = [_who(kb, c.name) for c in cands[:k]]
    return ((state.sex is None and any({"female", "male"} & w for w in who))
            or (state.age is None and any({"child", "elderly"} & w for w in who)))


def profile_question(state: ConsultState) -> str:
    """Age and sex, or the one of them still unknown."""
    if state.age is not None and state.sex is None:
        return TEMPLATES["profile_sex"]
    if state.sex is not None and state.age is None:
        return TEMPLATES["profile_age"]
    return TEMPLATES["profile"]


def askable(kb: KB, concept: str) -> bool:
    table = kb.lexicon.table_surfaces
    if concept in kb.lexicon.broader or concept in PLAIN or concept in table:
        return True
    return 2 <= len(concept) <= 4 and not _NOT_ASKABLE.search(concept)


def _another_form_of_present_pain(kb: KB, concept: str, present: set[str]) -> bool:
    """下腹坠痛 when the patient said 右下腹痛 (both 下腹痛): a pain the patient already described, in other words —
    not worth a question of its own (tenderness, 压痛 / 反跳痛, still is)."""
    if not concept.endswith("痛") or "压痛" in concept or "反跳痛" in concept:
        return False
    return bool((kb.lexicon.expand(concept) - {concept}) & present)


def _entropy(ps) -> float:
    return -sum(p * math.log(p) for p in ps if p > 0)


def best_symptom(state: ConsultState, kb: KB, cands: list[Candidate], k: int = 10) -> tuple[str, float] | None:
    """The unasked symptom with the largest expected information gain over the top-k candidates."""
    top = cands[:k]
    if len(top) < 2:
        return None
    z = sum(c.prob for c in top)
    probs = [c.prob / z for c in top]
    h0 = _entropy(probs)
    sets = [kb.concepts(c.name) for c in top]
    seen = set(state.symptoms)
    present = set(state.present())
    asked = {s.split(":", 1)[1] for s in state.asked if s.startswith("symptom:")}
    pool = sorted({x for s in sets for x in s} - seen - asked)
    best, best_gain = None, MIN_GAIN
    for s in pool:
        if not askable(kb, s):
            continue
        if _another_form_of_present_pain(kb, s, present):
            continue
        pm = p_miss(kb, s)
        like = [P_HIT if s in cs else pm for cs in sets]
        p_yes = sum(p * l for p, l in zip(probs, like))
        if p_yes <= 0 or p_yes >= 1:
            continue
        post_yes = [p * l / p_yes for p, l in zip(probs, like)]
        post_no = [p * (1 - l) / (1 - p_yes) for p, l in zip(probs, like)]
        gain = h0 - p_yes * _entropy(post_yes) - (1 - p_yes) * _entropy(post_no)
        if gain > best_gain + 1e-12:
            best, best_gain = s, gain
    return (best, best_gain) if best else None


def next_question(state: ConsultState, kb: KB, cands: list[Candidate]) -> Question | None:
    """One question, or None when nothing worth asking is left."""
    # a contradiction in the latest answer is cleared up first (once per symptom)
    for c in state.contradictions:
        if c["turn"] == state.patient_turns and state.asked.get(f"clarify:{c['symptom']}", 0) == 0:
            said = {"present": "有", "absent": "没有"}
            name = PLAIN.get(c["symptom"], c["symptom"])
            return Question(f"clarify:{c['symptom']}",
                            f"想确认一下：您前面说{said[c['was']]}{name}，刚才又说{said[c['now']]}，现在到底有没有{name}？",
                            "patient contradicted an earlier answer")
    late = [c for c in state.pregnancy if LATE_PERIOD.search(c)]
    if late and len(late) == len(state.pregnancy) and not state.asked.get("pregnancy", 0):
        return Question("pregnancy", TEMPLATES["late_period"], "a late period: whether a pregnancy is possible first")
    if not state.present():  # nothing the KB knows yet: take the history anyway, symptoms first
        for slot in ("chief", "duration", "medication", "exams", "history", "more", "allergy"):
            if not state.asked.get(slot, 0) and not state.known(slot):
                return Question(slot, TEMPLATES[slot], "no symptom the KB knows yet" if slot == "chief"
                                else f"{slot} not yet known")
        return None
    # an off-topic answer: ask the same thing once more
    if state.last_offtopic and len(state.last_slots) == 1:
        slot = state.last_slots[0]
        if state.asked.get(slot, 0) < 2:
            text = TEMPLATES.get(slot) or symptom_question(slot.split(":", 1)[1])
            return Question(slot, "可能我没问清楚，" + text, "the last answer did not answer the question")
    pain = any(PAIN_LIKE.search(s) for s in state.present())
    n_sym = sum(1 for s in state.asked if s.startswith("symptom:"))
    fever = "发热" in state.present()
    plan: list[str] = ["duration"]
    if fever:  # how high a fever goes decides how soon (an infant's especially): asked before anything else
        plan.insert(0 if state.age is not None and state.age < 3 else 1, "temperature")
    if state.child and {"腹泻", "呕吐"} & set(state.present()):  # a child losing fluid: dehydration first (WHO IMCI)
        plan.append("hydration")
    if pain:
        plan.append("site")
    # lower-abdominal / pelvic pain or vaginal bleeding: sex first, then (a woman of 12–55) a possible pregnancy;
    # otherwise age and sex once the leading candidates turn on them (after the first symptom question)
    pelvic = pelvic_complaint(state)
    if pelvic and state.sex is None:
        plan.append("profile")
    early_pregnancy = pelvic and state.reproductive_female()
    if early_pregnancy:
        plan.append("pregnancy")
    plan.append("symptom")
    if not pelvic and profile_matters(state, kb, cands):
        plan.append("profile")
    # the past history (chronic illness, operations) and regular medicines, asked together as a GP does, before the
    # second symptom question: a chronic lung, heart or metabolic disease changes the differential more than one symptom
    plan.append("history")
    plan.append("symptom")
    if pain:
        plan.append("character")
    if state.reproductive_female() and not early_pregnancy:
        plan.append("pregnancy")
    plan += ["medication", "symptom", "history", "allergy", "profile", "exams", "symptom", "more"]
    sym_budget = 0
    for slot in plan:
        if slot == "symptom":
            sym_budget += 1
            if n_sym >= min(sym_budget, SYMPTOM_QUESTIONS_MAX):
                continue
            got = best_symptom(state, kb, cands)
            if got:
                return Question(f"symptom:{got[0]}", symptom_question(got[0]),
                                f"best separates the leading candidates (information gain {got[1]:.3f})", got[1])
            continue
        if state.asked.get(slot, 0) or state.known(slot):
            continue
        text = site_question(state) if slot == "site" else profile_question(state) if slot == "profile" else TEMPLATES[slot]
        why = f"{slot} not yet known"
        if slot == "profile" and pelvic:
            why = "lower-abdominal or pelvic complaint: the differential depends on sex (and a possible pregnancy)"
        elif slot == "pregnancy" and early_pregnancy:
            why = "a woman of 12–55 with a lower-abdominal or pelvic complaint: a pregnancy (ectopic) first"
        elif slot == "profile" and profile_matters(state, kb, cands):
            why = "the leading candidates depend on age or sex"
        return Question(slot, text, why)
    return None
