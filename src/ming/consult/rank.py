"""Candidate conditions from the collected findings: a naive-Bayes score over the KB's disease →
symptom links. A present symptom the disease lists is likely (P_HIT), one it does not list is as
likely as the symptom's share of all diseases allows (rare symptoms that a disease lacks count
against it more); an absent symptom the disease lists counts against it; the disease's commonness
(tables/common.tsv, else its page's 发病率 capped) is the prior, so common diseases lead while the
evidence is thin; a diagnosis of a kind that needs more than common symptoms (named after a pathogen
or a person, a syndrome, congenital, a tumour, TCM-only) is held back until a distinguishing finding
supports it, and one that needs a story (an injury, a poisoning, an operation, a hospital stay) until the
patient tells it; who a disease affects (children, the elderly, pregnancy, one sex: strict from its
name and departments, softer from its page's 易感人群) is weighed against who the patient is."""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import asdict, dataclass, field

from ming.consult.state import ConsultState
from ming.kb.store import KB

P_HIT = 0.6  # P(patient has symptom | disease lists it)
PRIOR_WEIGHT = 0.5  # the commonness prior (hand-tiered common diseases; the KB's own figures capped)
GROUP_FIT_BONUS = 2.0  # a child's illness for a child, …
PREGNANCY_FIT = 6.0  # a disease of pregnancy when the patient says a period is late or she is pregnant
PRUNE_MARGIN = 2
CHIEF_MISS = math.log(0.1)  # a disease that does not explain the chief complaint at all (a doctor rules it out first)
GROUPS = ("child", "elderly", "pregnancy", "female", "male")
# kinds of diagnosis (ming.kb.build.KINDS) held back: the first set until a finding few diseases share supports
# them (SPECIFIC_DF), the second until the patient's story tells what they need (ConsultState.context)
KIND_PENALTY = {"pathogen": 0.1, "eponym": 0.1, "syndrome": 0.3, "congenital": 0.1, "tumour": 0.2, "tcm": 0.2,
                "critical": 0.1, "injury": 0.05, "exposure": 0.1, "treatment": 0.05, "hospital": 0.02}
NEEDS_STORY = {"injury", "exposure", "treatment", "hospital"}
NEVER_LIFTED = {"tcm"}  # a TCM pattern (肾虚, 体寒) is not what a finding distinguishes
SPECIFIC_DF = 30  # a finding listed by at most this many diseases distinguishes
# a disease of a group the patient is not in (a children's disease for an adult-sounding text, a woman's disease for a
# man, a disease of pregnancy for a man or a child) is left off the candidates altogether, however well it matches
EXCLUDE_FIT = math.log(0.05)
# a long journey or immobility (ConsultState.long_travel) makes a thrombosis likelier (Wells: immobilisation)
THROMBOSIS = re.compile(r"血栓|栓塞")
TRAVEL_BOOST = math.log(5.0)
# a disease named after an organ needs a finding there: (organ words in the name, words of a finding of that organ
# among the present symptoms and sites). 慢性咽炎 is not offered for dizziness, 痛经 not for diarrhoea, 急性气管支气管炎
# not for vomiting, however common they are and whatever else the KB lists for them.
ORGANS = tuple((re.compile(a), re.compile(b)) for a, b in (
    (r"咽|喉|扁桃体|声带|会厌", r"咽|喉|嗓|扁桃体|声|吞咽|咳|痰"),
    (r"鼻", r"鼻|涕|嗅|喷嚏|头痛"),
    (r"耳", r"耳|听|眩晕"),
    (r"眼|睑|结膜|角膜|巩膜|视网膜|虹膜|泪|青光眼|白内障|视|麦粒肿|霰粒肿", r"眼|视|睑|泪|结膜|畏光|复视|看"),
    (r"牙|龈|龋|根尖|口腔|口炎|舌|唇|腮腺|颌", r"牙|龈|口|舌|唇|腮|咀嚼|张口|面|颊|颌"),
    (r"气管|肺|胸膜|哮喘", r"咳|痰|喘|呼吸|胸|气短|气促|气急|憋|咯血"),
    (r"呼吸道", r"咳|痰|喘|呼吸|胸|咽|喉|嗓|鼻|涕|喷嚏|发热|头痛|乏力|肌肉"),
    (r"胃|食管|贲门|幽门|十二指肠|消化", r"腹|胃|酸|嗳|恶心|呕|吐|食欲|纳|消化|胀|烧心|吞咽|黑便|呕血|饱|嗝"),
    (r"肠|阑尾|痢|泄泻", r"腹|便|泻|肠|胀|呕|吐|恶心|肛|排气"),
    (r"肛|痔", r"肛|便|痔"),
    (r"肝|胆|胰|黄疸", r"腹|黄|胆|肝|恶心|呕|食欲|纳|胀|厌油"),
    (r"肾|尿|膀胱|泌尿|前列腺", r"尿|腰|肾|排尿|水肿|浮肿|会阴|射精"),
    (r"心(?!理|因|身|境|情)|冠|房颤|早搏", r"(?<!恶)心|胸|气短|气促|呼吸|喘|晕厥|悸|水肿|憋"),
    (r"脑|颅|头痛", r"头|晕|意识|昏|肢|麻|抽搐|言语|说话|口角|无力|瘫|记忆|眩|呕"),
    (r"皮|疹|癣|疣|痤疮|痘|疱|痱|疖|痈|毛囊|银屑|白癜|斑|痣|瘙痒", r"皮|疹|痒|斑|红|疱|屑|痘|疙瘩|肿块|色素|脱发|毛|包"),
    (r"关节|骨|椎|脊|肩|膝|踝|腕|肘|髋|腱|韧带|滑膜|(?<!心)肌(?!瘤)", r"关节|骨|腰|颈|肩|膝|踝|腕|肘|髋|背|腿|臂|手|足|脚|活动|僵|肌|酸|麻|肿"),
    (r"月经|痛经|经期|闭经|经前|经间|经量|经行", r"经|例假|阴道出血|阴道流血"),
    (r"子宫|卵巢|阴道|宫颈|盆腔|附件|输卵管|外阴|带下|妊娠|孕|产后|流产|胎", r"经|例假|阴道|白带|下腹|盆|孕|性交|同房|出血|外阴|妊娠|流产|胎|产"),
    (r"乳腺|乳房|乳头", r"乳|胸|腋"),
    (r"腰", r"腰|背|臀|腿"),
    (r"踝|足(?!癣)", r"踝|脚|足|崴"),
    (r"甲状腺", r"颈|甲状腺|悸|慌|怕热|多汗|消瘦|手抖|突眼|乏力|怕冷|畏寒|水肿|肿块|声音|嘶哑"),
    (r"焦虑|抑郁|精神|心理|神经症|神经官能|癔|强迫|恐惧|躁", r"焦虑|紧张|情绪|抑郁|失眠|心情|害怕|担心|恐|烦|睡|悸|慌|"
                                                          r"多梦|易醒|乏力|疲|压力|胸闷|晕|头痛|易激"),
    (r"血压", r"头|晕|血压|(?<!恶)心|胸|耳鸣|视|乏力|颈"),
    (r"睾丸|附睾|阴茎|包皮|龟头|精索|阴囊", r"阴囊|睾丸|阴茎|包皮|龟头|尿|会阴|射精|勃起|腹股沟"),
))
ORGAN_MISS = math.log(0.2)
# the belly's site said, and only that site: an upper-abdominal organ's disease for a lower-abdominal pain (胆囊炎 for
# 右下腹痛) or a pelvic organ's for an upper-abdominal one is unlikely (a diffuse 胃肠炎 is neither)
UPPER_ORGANS = re.compile(r"^(?!.*肠).*(?:胆|肝|胰|胃|十二指肠|食管|贲门)")
LOWER_ORGANS = re.compile(r"阑尾|盆腔|附件|卵巢|输卵管|子宫|宫外孕|膀胱|前列腺|痛经")
LOWER_SITES, UPPER_SITES = {"下腹", "右下腹", "左下腹"}, {"上腹", "右上腹", "左上腹"}
SITE_MISS = math.log(0.3)
# a disease the patient says they already have (their history: "老慢支好多年了", "有高血压") is the likeliest cause of a
# flare of what it causes — a doctor reads a known diagnosis first
KNOWN_BOOST = math.log(4.0)
_DENIED = re.compile(r"没有|没|无|否认|不是|爸|妈|父|母|家里|家族|兄|姐|弟|妹|爷爷|奶奶|外公|外婆")  # denied, or a relative's
# a complaint that has lasted four weeks or more is not an acute infection (a cold, "急性…"): a cough of two months
# is asthma, reflux, TB or a chronic bronchitis before it is a cold
ACUTE = re.compile(r"^急性|^感冒$|流行性感冒|^上呼吸道感染$|^急性上呼吸道感染$")
CHRONIC_DAYS = 28
ACUTE_MISS = math.log(0.3)
_NUMS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10, "半": 0.5, "几": 3}
_UNIT_DAYS = {"小时": 1 / 24, "钟头": 1 / 24, "天": 1, "日": 1, "周": 7, "星期": 7, "礼拜": 7, "月": 30, "年": 365}
_SPAN = re.compile(r"(\d+(?:\.\d+)?|[一二两三四五六七八九十半几]+)\s*(?:多|来)?\s*(个)?\s*(?:多|来)?\s*(小时|钟头|天|日|周|星期|礼拜|月|年)")


def _cn_number(t: str) -> float:
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    if "十" in t:  # 十, 十五, 二十, 二十五
        a, _, b = t.partition("十")
        return (_NUMS.get(a, 1) if a else 1) * 10 + (_NUMS.get(b, 0) if b else 0)
    return _NUMS.get(t[-1], 1)


def duration_days(durations) -> float | None:
    """The longest span the patient gave, in days ("两个多月" 60, "半年" 180, "好多年" 365), or None."""
    best = None
    for d in durations:
        days = None
        if re.search(r"多年|好多年|很多年|从小", d):
            days = 365.0
        elif "半年" in d:
            days = 180.0
        else:
            m = _SPAN.search(d)
            n = _cn_number(m.group(1)) if m else 0
            # "一月22号" is January and "2017年" a year, not spans: a month needs 个 ("两个多月"), a year a small number
            if m and not (m.group(3) == "月" and not m.group(2)) and not (m.group(3) == "年" and n >= 100):
                days = n * _UNIT_DAYS[m.group(3)]
        if days is not None and (best is None or days > best):
            best = days
    return best


def site_fit(name: str, sites) -> float:
    """SITE_MISS when the patient placed the belly pain only low and the disease is of an upper-abdominal organ,
    or only high and the disease is of a pelvic organ."""
    belly = set(sites) & (LOWER_SITES | UPPER_SITES)
    if belly and belly <= LOWER_SITES and UPPER_ORGANS.search(name):
        return SITE_MISS
    if belly and belly <= UPPER_SITES and LOWER_ORGANS.search(name):
        return SITE_MISS
    return 0.0


_ORGAN_RULES: dict[str, tuple[int, ...]] = {}


def organ_fit(name: str, findings_text: str) -> float:
    """ORGAN_MISS when the disease's name names an organ (ORGANS) and no present finding is of that organ."""
    rules = _ORGAN_RULES.get(name)
    if rules is None:
        rules = _ORGAN_RULES[name] = tuple(i for i, (rx, _) in enumerate(ORGANS) if rx.search(name))
    if not rules or any(ORGANS[i][1].search(findings_text) for i in rules):
        return 0.0
    return ORGAN_MISS


@dataclass
class Candidate:
    name: str
    score: float
    prob: float = 0.0  # normalised over the ranked pool
    supporting: list[str] = field(default_factory=list)  # present findings the KB lists for it
    against: list[str] = field(default_factory=list)  # absent findings the KB lists for it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(self.score, 3)
        d["prob"] = round(self.prob, 4)
        return d


def warm(kb: KB) -> KB:
    """Fill the KB's per-disease caches the ranking uses (once per process, ~0.1 s)."""
    return kb.warm(PRIOR_WEIGHT)


P_MISS_SCALE, P_MISS_FLOOR, P_MISS_CAP = 1.0, 0.02, 0.3


def p_miss(kb: KB, concept: str) -> float:
    """P(patient has symptom | disease does not list it): the symptom's base rate, bounded. The KB lists a
    handful of symptoms per disease (流涕 by 39 of 8,799, 头痛 by 121), so a symptom it does not list is not
    a symptom the disease lacks: the floor keeps one unlisted finding from outweighing how common a disease is."""
    return min(P_MISS_CAP, max(P_MISS_FLOOR, P_MISS_SCALE * len(kb.diseases_with(concept)) / kb.n))


def _child(state: ConsultState) -> tuple[bool, bool]:
    """(a child, whether the age group is known): under 14, or "孩子…" without an age."""
    age = state.age
    return (age is not None and age < 14) or (age is None and state.child), age is not None or state.child


def group_fit(state: ConsultState, groups) -> float:
    """Log-weight of a disease of a group (children, the elderly, pregnancy, one sex): a penalty when the
    patient is not in it (strong) or not known to be in it (mild), a small bonus when they are. With no age
    and no word for a child (孩子, 宝宝, 儿子 …) the text is an adult's: a children's disease is held well back."""
    pen = 0.0
    fits = math.log(GROUP_FIT_BONUS)
    age, sex, preg = state.age, state.sex, state.pregnant()
    child, known = _child(state)
    for g in groups:
        if g == "child":
            pen += fits if child else math.log(0.01 if known else 0.03)
        elif g == "elderly":
            pen += fits if age is not None and age >= 60 else math.log(0.01 if known else 0.2)
        elif g == "pregnancy":  # must-not-miss in a woman of 12–55 (ectopic): milder while it is not ruled out
            # a late period or a pregnancy said: a disease of pregnancy is the first thought (early pregnancy before
            # gastritis for a late period with nausea), a stronger fit than the other groups'
            pen += math.log(PREGNANCY_FIT) if preg else math.log(0.001 if preg is False or not could_be_pregnant(state)
                                              else 0.3 if state.reproductive_female() else 0.1)
        elif g == "female":
            pen += 0.0 if sex == "女" else math.log(0.001 if sex == "男" else 0.5)
        elif g == "male":
            pen += 0.0 if sex == "男" else math.log(0.001 if sex == "女" else 0.5)
    return pen


def could_be_pregnant(state: ConsultState) -> bool:
    """Not a man, not a child, not past 55."""
    child = (state.age is not None and state.age < 12) or (state.age is None and state.child)
    return state.sex != "男" and not child and not (state.age is not None and state.age > 55)


def mostly_fit(state: ConsultState, groups) -> float:
    """Log-weight of a disease that mostly affects a group (its page's 易感人群: "好发于婴幼儿", "多见于老年人",
    "女性"): the softer version of `group_fit` — a predominance, not a rule."""
    pen = 0.0
    age, sex, preg = state.age, state.sex, state.pregnant()
    child, known = _child(state)
    for g in groups:
        if g == "child":
            pen += math.log(1.5 if child else 0.1 if known else 0.2)
        elif g == "elderly":
            pen += math.log(1.3 if age is not None and age >= 60 else 0.1 if child or (age is not None and age < 40)
                            else 0.7)
        elif g == "pregnancy":
            pen += math.log(1.5 if preg else 0.01 if preg is False or not could_be_pregnant(state) else 0.2)
        elif g == "female":
            pen += math.log(1.0 if sex == "女" else 0.05 if sex == "男" else 0.6)
        elif g == "male":
            pen += math.log(1.0 if sex == "男" else 0.05 if sex == "女" else 0.6)
    return pen


def kind_fit(kb: KB, state: ConsultState, name: str, matched) -> float:
    """Log-weight of a diagnosis of a kind that needs more than common symptoms (KIND_PENALTY): the strongest
    penalty among its kinds, unless the evidence supports it — a matched finding few diseases share (a
    pathogen, an eponym, a syndrome …) or the story it needs (an injury, a poisoning …). A disease of the
    common-disease table is held back only for a missing injury."""
    kinds = kb.diseases[name].get("kinds", ())
    if not kinds:
        return 0.0
    common = kb.common(name)
    specific = None
    worst = 1.0
    for k in kinds:
        if k in NEEDS_STORY:
            if k in state.context or (k == "treatment" and state.medication) or (common and k != "injury"):
                continue
        else:
            if common:
                continue
            if k in NEVER_LIFTED:
                worst = min(worst, KIND_PENALTY.get(k, 1.0))
                continue
            if specific is None:
                specific = any(len(kb.diseases_with(c)) <= SPECIFIC_DF for c in matched)
            if specific:  # a distinguishing finding halves the penalty (in log terms): it does not name the kind
                worst = min(worst, math.sqrt(KIND_PENALTY.get(k, 1.0)))
                continue
        worst = min(worst, KIND_PENALTY.get(k, 1.0))
    return math.log(worst)


def roots(concepts: list[str], kb: KB) -> list[tuple[str, ...]]:
    """Independent pieces of evidence: each present symptom that is not the broader form of another
    one, with its broader forms, most specific first (右下腹压痛 → (右下腹压痛, 压痛))."""
    have = set(concepts)
    broader_of_other = set()
    for c in have:
        broader_of_other |= kb.lexicon.expand(c) - {c}
    out = []
    for c in sorted(have - broader_of_other):
        chain = [c] + sorted((kb.lexicon.expand(c) - {c}) & have, key=lambda b: len(kb.diseases_with(b)))
        out.append(tuple(chain))
    return out


def rank(state: ConsultState, kb: KB, top: int = 10) -> list[Candidate]:
    """The `top` most likely diseases given the present and absent findings. Scores accumulate over the
    KB's inverted index (disease lists per symptom), so a turn costs the postings of its findings."""
    pos = [c for c in state.present() if kb.diseases_with(c)]
    neg = [c for c in state.absent() if kb.diseases_with(c)]
    if not pos:
        return []
    chains = roots(pos, kb)
    # the chief complaint's forms among the findings (腹痛, and 右下腹痛 which is a 腹痛; not 压痛 beside it)
    chief = set(state.chief_symptoms)
    chief_forms = [c for c in pos if chief & kb.lexicon.expand(c)]
    explains_chief = set().union(*(kb.diseases_with(c) for c in chief_forms)) if chief_forms else None
    hit, neg_hit = math.log(P_HIT), math.log(1 - P_HIT)
    # every disease starts as if it explained nothing; what it lists then raises (or lowers) its score
    base = sum(math.log(p_miss(kb, ch[-1])) for ch in chains)
    base += sum(math.log(1 - p_miss(kb, c)) for c in neg)
    best: dict[str, dict[int, tuple[float, str]]] = {}
    for i, ch in enumerate(chains):
        miss = math.log(p_miss(kb, ch[-1]))
        for j, c in enumerate(ch):
            # a disease listing only a broader form (腹痛 for 右下腹压痛) explains the finding as far as that
            # form is specific: P_HIT scaled by sqrt(df(finding) / df(broader form))
            gain = (hit if j == 0 else math.log(P_HIT * math.sqrt(
                max(1, len(kb.diseases_with(ch[0]))) / max(1, len(kb.diseases_with(c)))))) - miss
            for name in kb.diseases_with(c):
                got = best.setdefault(name, {})
                if i not in got or got[i][0] < gain:
                    got[i] = (gain, c)
    against: dict[str, list[str]] = {}
    neg_gain = {c: neg_hit - math.log(1 - p_miss(kb, c)) for c in neg}
    for c in neg:
        for name in kb.diseases_with(c):
            if name in best:
                against.setdefault(name, []).append(c)
    fit = {g: group_fit(state, (g,)) for g in GROUPS}
    soft = {g: mostly_fit(state, (g,)) for g in GROUPS}
    findings_text = "、".join(pos + list(state.sites) + (["月经"] if "menses" in state.context else []))
    # a disease explaining two findings fewer than the best-explaining one cannot reach the lead (each
    # finding is worth more than the spread of priors): skip scoring it
    need = max(len(got) for got in best.values()) - PRUNE_MARGIN
    said = "；".join(c for c in state.history if not _DENIED.search(c))
    known = set(kb.diseases_in(said)) if said else set()
    days = duration_days(state.spans)
    chronic = days is not None and days >= CHRONIC_DAYS
    scores = []
    for name, got in best.items():
        if len(got) < need:
            continue
        s = base + kb.prior_term(name, PRIOR_WEIGHT) + sum(g for g, _ in got.values())
        d = kb.diseases[name]
        gf = sum(fit.get(g, 0.0) for g in d.get("groups", ()))
        if gf <= EXCLUDE_FIT:
            continue
        s += gf
        for g in d.get("mostly", ()):
            s += soft.get(g, 0.0)
        s += organ_fit(name, findings_text)
        if state.sites:
            s += site_fit(name, state.sites)
        if name in known:
            s += KNOWN_BOOST
        if chronic and ACUTE.search(name):
            s += ACUTE_MISS
        if state.long_travel and THROMBOSIS.search(name):
            s += TRAVEL_BOOST
        if d.get("kinds"):
            s += kind_fit(kb, state, name, [c for _, c in got.values()])
        for c in against.get(name, ()):
            s += neg_gain[c]
        if explains_chief is not None and name not in explains_chief:
            s += CHIEF_MISS
        scores.append((s, name))
    if not scores:
        return []
    leaders = heapq.nsmallest(top, scores, key=lambda x: (-x[0], x[1]))
    m = leaders[0][0]
    z = sum(math.exp(sc - m) for sc, _ in leaders)
    out = []
    for sc, name in leaders:  # probabilities among the leading candidates
        sup = [c for _, (_, c) in sorted(best[name].items())]
        out.append(Candidate(name, sc, math.exp(sc - m) / z, sup, list(against.get(name, []))))
    return out
