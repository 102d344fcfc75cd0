"""What is known in a consultation, rebuilt from the message history every turn (deterministic, so
chat, serve and eval carry no state of their own). Everything comes from the patient's words: a
short "没有" / "不知道" counts only as the answer to the question the assistant asked just before."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

from ming.consult.facts import Findings, MessageFacts, read_message
from ming.kb.symptoms import Lexicon, normalize_text

HISTORY_SLOTS = ("duration", "site", "character", "trigger", "profile", "pregnancy", "medication", "history",
                 "allergy", "exams", "more", "chief")
# words in an assistant question that show which history item it asks about
SLOT_WORDS = {
    "duration": r"多久|多长时间|什么时候开始|几天了|起病",
    "temperature": r"体温|多少度|几度",
    "site": r"哪个部位|什么部位|哪个位置|具体位置|哪里疼|哪里痛",
    "character": r"什么样的(?:疼|痛)|怎么个(?:疼|痛)|疼痛的性质|哪种疼",
    "trigger": r"什么情况下|诱因|加重或缓解|缓解或加重",
    "profile": r"年龄|多大了|几岁|性别",
    "pregnancy": r"怀孕|末次月经|月经",
    "medication": r"药|处理过|治疗过",
    "history": r"既往|慢性病|病史|做过手术|以前有没有",
    "allergy": r"过敏",
    "hydration": r"小便|尿量|尿布|眼泪",
    "exams": r"医院|检查|化验",
    "more": r"其他不舒服|别的不舒服|还有其他|还有别的",
    "chief": r"哪里不舒服|什么症状|怎么不舒服",
}
_SLOT_RES = {k: re.compile(v) for k, v in SLOT_WORDS.items()}
_ASKING = re.compile(r"[？?]|吗|呢|有没有|是否|多久|哪")


@dataclass
class SymptomFact:
    polarity: str  # present | absent | uncertain
    turn: int  # patient turn (1-based) that said it last
    said: str  # the patient's words ("拉肚子"), or "有"/"没有" answering a question


@dataclass
class ConsultState(Findings):
    chief_complaint: str = ""
    chief_symptoms: list[str] = field(default_factory=list)  # what the chief complaint names (canonical)
    symptoms: dict[str, SymptomFact] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)  # slot ("duration", "symptom:发热" …) -> times asked
    answered: list[str] = field(default_factory=list)  # slots the patient answered (anything, "不知道" included)
    unknown: list[str] = field(default_factory=list)  # slots answered "不知道"
    contradictions: list[dict] = field(default_factory=list)
    offtopic: int = 0  # patient turns that answered none of what was asked
    last_offtopic: bool = False
    nothing_more: bool = False
    asks_verdict: bool = False
    patient_question: str = ""  # the latest patient message's own question
    patient_turns: int = 0
    assistant_turns: int = 0
    last_slots: list[str] = field(default_factory=list)  # what the last assistant message asked

    # -- views ------------------------------------------------------------------------------------
    def present(self) -> list[str]:
        return [s for s, f in self.symptoms.items() if f.polarity == "present"]

    def absent(self) -> list[str]:
        return [s for s, f in self.symptoms.items() if f.polarity == "absent"]

    def known(self, slot: str) -> bool:
        """A history item is known when the patient said something about it (even "没有" or "不知道")."""
        value = {"duration": self.duration, "site": self.sites, "character": self.character, "trigger": self.triggers,
                 "pregnancy": self.pregnancy, "medication": self.medication, "history": self.history,
                 "allergy": self.allergy, "hydration": self.hydration}.get(slot)
        if slot == "profile":
            return self.age is not None and self.sex is not None
        if slot == "temperature":
            return self.temperature is not None or slot in self.answered
        return bool(value) or slot in self.answered

    def pregnant(self) -> bool | None:
        """True / False when the patient said so, None when unknown."""
        said = "；".join(self.pregnancy)
        if not said or "不清楚" in said:
            return None
        if re.search(r"否认|(?:没有?|未|不是|没)怀孕|未孕|没怀上|不可能|没可能|不会|没有可能|月经正常|刚来(?:过)?月经", said):
            return False
        return bool(re.search(r"怀孕|孕\d|孕期|妊娠|停经|月经(?:没来|推迟)|例假(?:没来|推迟)", said)) or None

    def reproductive_female(self) -> bool:
        return self.sex == "女" and (self.age is None or 12 <= self.age <= 55)

    def findings(self) -> dict:
        """The collected findings, for triage and display."""
        return {"present": self.present(), "absent": self.absent(), "sites": self.sites, "duration": self.duration,
                "character": self.character, "triggers": self.triggers, "long_travel": self.long_travel,
                "temperature": self.temperature,
                "age": self.age, "sex": self.sex, "history": self.history, "medication": self.medication,
                "allergy": self.allergy, "pregnancy": self.pregnancy}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConsultState":
        d = dict(d)
        d["symptoms"] = {k: SymptomFact(**v) for k, v in (d.get("symptoms") or {}).items()}
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def asked_slots(text: str, lexicon: Lexicon) -> list[str]:
    """What an assistant message asks about: history slots by their words, symptoms by name ("symptom:发热"),
    read only from its sentences that ask something."""
    parts = re.split(r"(?<=[。！!？?\n；;])", normalize_text(text))
    q = "".join(p for p in parts if _ASKING.search(p))
    if not q:
        return []
    slots = [s for s, rx in _SLOT_RES.items() if rx.search(q)]
    for m in lexicon.mentions(q):
        slot = f"symptom:{m.canonical}"
        if slot not in slots:
            slots.append(slot)
    return slots


def _with_broader(lexicon: Lexicon, canonical: str) -> list[str]:
    """The symptom, then its broader forms in a fixed order (`expand` is a set: the findings would be listed in a
    different order from one run to the next)."""
    return [canonical] + sorted(lexicon.expand(canonical) - {canonical})


def _add(lst: list[str], items: Sequence[str]):
    for x in items:
        if x and x not in lst:
            lst.append(x)


def _set_symptom(st: ConsultState, canonical: str, polarity: str, turn: int, said: str):
    old = st.symptoms.get(canonical)
    if old and {old.polarity, polarity} == {"present", "absent"}:
        st.contradictions.append({"symptom": canonical, "was": old.polarity, "now": polarity, "turn": turn})
    if old and polarity == "uncertain" and old.polarity != "uncertain":
        return  # "不知道有没有发烧" does not undo an earlier clear answer
    st.symptoms[canonical] = SymptomFact(polarity, turn, said)


def build_state(messages: Sequence[dict], lexicon: Lexicon) -> ConsultState:
    st = ConsultState()
    pending: list[str] = []
    for msg in messages:
        role, content = msg.get("role"), msg.get("content") or ""
        if not isinstance(content, str):
            content = str(content)
        if role == "assistant":
            st.assistant_turns += 1
            pending = asked_slots(content, lexicon)
            for s in pending:
                st.asked[s] = st.asked.get(s, 0) + 1
            st.last_slots = pending
            continue
        if role != "user":
            continue
        st.patient_turns += 1
        f = read_message(content, lexicon)
        _absorb(st, f, pending, st.patient_turns, lexicon)
        pending = []
    _site_symptoms(st, lexicon)
    return st


def _absorb(st: ConsultState, f: MessageFacts, pending: list[str], turn: int, lexicon: Lexicon):
    if not st.chief_complaint and any(m.polarity == "present" for m in f.mentions):
        clauses = [c for c in re.split(r"[，,。；;！!？?\n]", f.text) if c.strip()]
        with_symptom = [c for c in clauses if lexicon.mentions(c)]
        st.chief_complaint = "，".join(with_symptom[:2])[:60]
        st.chief_symptoms = list(dict.fromkeys(m.canonical for m in f.mentions if m.polarity == "present"))
    for m in f.mentions:
        for c in _with_broader(lexicon, m.canonical) if m.polarity == "present" else (m.canonical,):
            _set_symptom(st, c, m.polarity, turn, m.surface)
    _add(st.sites, f.sites)
    _add(st.pain_sites, f.pain_sites)
    _add(st.character, f.character)
    _add(st.duration, f.duration)
    _add(st.spans, f.spans)
    _add(st.triggers, f.triggers)
    st.long_travel = st.long_travel or f.long_travel
    if f.temperature is not None:
        st.temperature = max(f.temperature, st.temperature or 0.0)
    if f.age is not None:
        st.age = f.age
    st.child = st.child or f.child
    _add(st.hydration, f.hydration)
    _add(st.dehydration, f.dehydration)
    if f.sex:
        st.sex = f.sex
    _add(st.history, f.history)
    _add(st.context, f.context)
    _add(st.medication, f.medication)
    _add(st.allergy, f.allergy)
    _add(st.pregnancy, f.pregnancy)
    # a short answer belongs to what was just asked
    answered_any = False
    for slot in pending:
        if slot.startswith("symptom:"):
            canonical = slot.split(":", 1)[1]
            named = [m for m in f.mentions if m.canonical == canonical]
            if named:
                answered_any = True
            elif f.yes or f.no or f.unknown:
                pol = "present" if f.yes else "absent" if f.no else "uncertain"
                for c in _with_broader(lexicon, canonical) if pol == "present" else (canonical,):
                    _set_symptom(st, c, pol, turn, "有" if f.yes else "没有" if f.no else "不知道")
                answered_any = True
        else:
            filled = {"duration": f.duration, "temperature": f.temperature is not None, "site": f.sites, "character": f.character, "trigger": f.triggers,
                      "profile": f.age is not None or f.sex, "pregnancy": f.pregnancy, "medication": f.medication,
                      "history": f.history, "allergy": f.allergy, "hydration": f.hydration, "exams": None,
                      "more": f.mentions,
                      "chief": f.mentions}.get(slot)
            if filled or f.yes or f.no or f.unknown or (slot in ("exams", "more", "chief") and f.informative):
                answered_any = True
                if slot not in st.answered:
                    st.answered.append(slot)
                target = {"pregnancy": st.pregnancy, "medication": st.medication, "history": st.history,
                          "allergy": st.allergy}.get(slot)
                if target is not None and not filled:
                    _add(target, ["否认（患者答“没有”）" if f.no else "不清楚" if f.unknown else f.text[:40]])
            if slot == "more" and (f.no or f.nothing_more or re.match(r"^没有?了?[。！!\s]*$", f.text)):
                st.nothing_more = True
        if f.unknown:
            _add(st.unknown, [slot])
    if f.nothing_more and st.patient_turns > 1:
        st.nothing_more = True
    st.asks_verdict = f.asks_verdict
    st.patient_question = f.question
    st.last_offtopic = bool(pending) and not answered_any and not f.informative and not f.question and not f.asks_verdict
    if st.last_offtopic:
        st.offtopic += 1


# a site said on its own ("在右下腹") joined with pain said elsewhere ("肚子疼") gives the sited symptom
_SITE_FORMS = {"痛": ("{}痛", "{}疼痛", "{}部疼痛"), "压痛": ("{}压痛", "{}部压痛"), "反跳痛": ("{}反跳痛", "{}部反跳痛")}


def _site_symptoms(st: ConsultState, lexicon: Lexicon):
    present = st.present()
    pain = any("痛" in s for s in present)
    for site in st.sites:
        for kind, forms in _SITE_FORMS.items():
            if (kind == "痛" and not pain and site not in st.pain_sites) or (kind != "痛" and kind not in present):
                continue
            for form in forms:
                c = lexicon.normalise(form.format(site))
                if c and c not in st.symptoms:
                    for x in _with_broader(lexicon, c):
                        if x not in st.symptoms:
                            st.symptoms[x] = SymptomFact("present", st.patient_turns, site)
                    break
