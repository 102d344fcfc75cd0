"""Medication cautions for an answer: prescription-only drugs named, and antibiotics for a cold.

    m = check_medication(answer, user_texts)   # user_texts: the user's messages of this conversation
    if m.notes: show "\n\n" + m.suffix after the answer

A drug counts when the answer names it as something to take (tables/rx_drugs.yaml, generic and brand
names); a mention in a negated clause ("不需要用抗生素", "不建议自行服用头孢") or in a topical form
("红霉素软膏") does not. For antibiotics, when the user's own words describe a viral-sounding illness
(cough, runny nose, sore throat; no high fever; no more than `VIRAL_MAX_DAYS` days; no sign that points
to bacteria such as pus), a plain note says most such infections need no antibiotic.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ming.safety.report import _trie_regex

RX_NOTE = "需医生面诊后开具"
VIRAL_NOTE = ("咳嗽、流鼻涕、嗓子疼这类症状出现不久、也没有高烧时，多数是病毒引起的上呼吸道感染，抗生素对病毒无效，"
              "一般不需要使用；多休息、多喝水，必要时对症用药即可。如果高烧不退、咳脓痰、呼吸困难，或症状超过一周不见好转，请及时就医。")
VIRAL_MAX_DAYS = 7

_TOPICAL = re.compile(r"^[\u4e00-\u9fff]{0,3}?(?:乳膏|软膏|凝胶|滴眼液|眼膏|滴耳液|喷剂|喷雾|栓|洗剂|外用|贴剂|贴|漱口)")
_NEG = re.compile(r"(?:不|无)需要?|不用|不必|没必要|没有必要|不建议|不推荐|不要|别|避免|勿|禁用|不宜|不能|不应|不需|用不着|不主张|不一定要?|未|无需")
_NEG_AFTER = re.compile(r"^[^。！？!?；;\n，,]{0,6}?(?:用不着|不需要|不必要?|没必要|不用|不需|无需|不推荐|不建议|没有用|无效)")
_CLAUSE = re.compile(r"[。！？!?；;\n，,]")
_VIRAL_SX = re.compile(r"咳嗽|干咳|咳|流鼻涕|流清?涕|鼻涕|鼻塞|打喷嚏|喷嚏|嗓子(?:疼|痛|不舒服|哑|干)|咽(?:痛|喉痛|干|痒)|喉咙(?:疼|痛|痒|不舒服)|感冒|着凉|受凉")
_HIGH_FEVER = re.compile(r"高烧|高热|(?:3[9]|4[01])(?:\.\d)?\s*(?:度|℃|°)|38\.[5-9]\s*(?:度|℃|°)|烧到\s*(?:3[89]|4[01])")
_BACTERIAL = re.compile(r"脓痰|黄脓|绿痰|化脓|脓点|脓|耳朵?(?:疼|痛)|中耳炎|尿频|尿急|尿痛|伤口|肺炎|扁桃体.{0,4}(?:脓|白点)|呼吸困难|喘不上气|胸痛")
_NUM = {"半": 0.5, "一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10, "几": 3}
_DURATION = re.compile(r"(\d+(?:\.\d+)?|半|一|两|二|三|四|五|六|七|八|九|十|几)\s*(?:个)?\s*(天|日|晚|周|星期|礼拜|月)")
_UNIT_DAYS = {"天": 1, "日": 1, "晚": 1, "周": 7, "星期": 7, "礼拜": 7, "月": 30}


@dataclass
class DrugMention:
    name: str
    cls: str
    negated: bool = False
    topical: bool = False


@dataclass
class MedicationCheck:
    mentions: list = field(default_factory=list)    # every DrugMention found
    rx: list = field(default_factory=list)          # prescription-only drugs the answer suggests taking
    antibiotic: bool = False                        # the answer suggests an antibiotic
    viral_context: bool = False
    notes: list = field(default_factory=list)       # sentences to add after the answer

    @property
    def suffix(self) -> str:
        return ("〔用药提示〕" + "".join(self.notes)) if self.notes else ""

    def to_dict(self) -> dict:
        return {"rx_drugs": [m.name for m in self.rx], "classes": sorted({m.cls for m in self.rx}),
                "antibiotic": self.antibiotic, "viral_context": self.viral_context, "notes": list(self.notes)}


@dataclass
class _Table:
    classes: dict
    name_to_class: dict
    regex: re.Pattern


_NOT_THE_DRUG = re.compile(r"抵抗|敏感|分泌|水平|释放|瘤|自身抗体|抗体|受体|样生长因子|原|c肽")


@lru_cache(maxsize=1)
def load_rx_table() -> _Table:
    import yaml

    spec = yaml.safe_load(resources.files("ming.safety").joinpath("tables/rx_drugs.yaml").read_text(encoding="utf-8"))
    name_to_class = {}
    for cls, c in spec["classes"].items():
        for n in c["names"]:
            name_to_class.setdefault(unicodedata.normalize("NFKC", n).lower(), cls)
    words = sorted(name_to_class, key=len, reverse=True)
    return _Table(spec["classes"], name_to_class, re.compile(_trie_regex(words)))


def find_drugs(answer: str) -> list[DrugMention]:
    """Prescription-only drugs named in `answer`, each with whether its clause negates it / it is topical."""
    t = unicodedata.normalize("NFKC", answer).lower()
    tab = load_rx_table()
    out = []
    for m in tab.regex.finditer(t):
        if _NOT_THE_DRUG.match(t, m.end()):  # 胰岛素抵抗, 胰岛素水平: the body's hormone, not the medicine
            continue
        start = max((c.end() for c in _CLAUSE.finditer(t, 0, m.start())), default=0)
        before = t[start:m.start()]
        out.append(DrugMention(name=answer[m.start():m.end()] if len(answer) == len(t) else m.group(0),
                               cls=tab.name_to_class[m.group(0)],
                               negated=bool(_NEG.search(before) or _NEG_AFTER.match(t[m.end():])),
                               topical=bool(_TOPICAL.match(t[m.end():m.end() + 8]))))
    return out


def duration_days(text: str) -> float | None:
    """The longest illness duration stated ("咳嗽两天", "一周了"), in days; None if none is stated."""
    best = None
    for m in _DURATION.finditer(text):
        tok = m.group(1)
        d = (_NUM[tok] if tok in _NUM else float(tok)) * _UNIT_DAYS[m.group(2)]
        best = d if best is None else max(best, d)
    return best


def viral_context(user_texts: list[str]) -> bool:
    """The user describes a viral-sounding upper-respiratory illness (see module doc)."""
    t = unicodedata.normalize("NFKC", "\n".join(user_texts))
    if not _VIRAL_SX.search(t) or _HIGH_FEVER.search(t) or _BACTERIAL.search(t):
        return False
    d = duration_days(t)
    return d is None or d <= VIRAL_MAX_DAYS


def check_medication(answer: str, user_texts: list[str] | None = None) -> MedicationCheck:
    tab = load_rx_table()
    res = MedicationCheck(mentions=find_drugs(answer))
    seen = set()
    for m in res.mentions:
        if m.negated or m.topical or m.name in seen:
            continue
        seen.add(m.name)
        res.rx.append(m)
    by_cls: dict[str, list[str]] = {}
    for m in res.rx:
        by_cls.setdefault(m.cls, []).append(m.name)
    for cls, names in by_cls.items():
        res.notes.append(tab.classes[cls]["note"].format(drugs="、".join(names)))
    res.antibiotic = "antibiotic" in by_cls
    res.viral_context = viral_context(user_texts or [])
    # the user asks about antibiotics and the answer does not itself say they are not needed
    asked = any(m.cls == "antibiotic" for u in (user_texts or [])[-1:] for m in find_drugs(u))
    said_no = any(m.cls == "antibiotic" and m.negated for m in res.mentions)
    if res.viral_context and (res.antibiotic or asked and not said_no):
        res.notes.append(VIRAL_NOTE)
    return res


class MedicationPostCheck:
    """The medication caution as a post-check of the turn pipeline (duck-typed `ming.respond.PostCheck`):
    sentences pass unchanged; `finish` returns the notes for the whole answer ('' when none)."""

    stage = "medication"
    per_sentence = False  # reads the whole answer at the end: streaming is not held back for it

    def __init__(self, user_texts: list[str]):
        self.user_texts = user_texts
        self.result: MedicationCheck | None = None

    def sentence(self, text: str, shown: str = "") -> str:
        return text

    def finish(self, shown: str = "") -> str:
        self.result = check_medication(shown, self.user_texts)
        return ("\n\n" + self.result.suffix) if self.result.suffix else ""

    def to_dict(self) -> dict:
        return self.result.to_dict() if self.result else {}
