"""Red-flag triage: does this conversation describe an emergency happening now?

A data-driven rule engine (rules/triage.yaml): concepts are regular expressions, rules combine
concepts (all / any / none) or call a numeric check (temperature in an infant, blood pressure,
glucose, SpO2, heart rate). Each concept hit is checked for negation ("没有胸痛"), past /
hypothetical / chronic scope ("去年胸痛住院", "如果胸痛出汗"), and knowledge questions
("心梗有哪些症状"). Rules fire on the union of concept hits over the last few user messages.

Pure Python; the rule file is compiled once (`default_triage()` is cached) and each message's
analysis is cached by text, so re-checking a growing conversation costs one new message. Work per
message is linear in its length (cue positions are found once and looked up by bisection; at most
`_MAX_HITS` candidate matches per concept are examined; a concept none of whose possible two-character
prefixes occurs in the message is skipped).

Every concept pattern, cue pattern, veto and rule may carry `tuned_on: [presentation ids]` (the labelled
messages it was written for, bench/data/triage/); `Triage(spec, exclude={"A02"})` drops the entries tuned
only on A02 (`strict=True`: every entry naming A02), which is how bench/safety.py measures
leave-presentation-out recall. A rule may carry `layer: NAME` (the packaged rules: `generic`, concept
classes shared by several presentations); `Triage(spec, layers_off={"generic"})` leaves those rules out.

`assess_conversation(messages, already_escalated)` triages a whole chat (all user turns, with short
"有/是的" answers read together with the assistant's question) and says which escalations are new.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import AbstractSet, Iterable, Sequence

from ming.errors import MingError

_CLAUSE_SEP = re.compile(r"[,;:。\n!?]|(?<!\d)\.(?!\d)")
_SENT_SEP = re.compile(r"[;。\n!?]|(?<!\d)\.(?!\d)")
_CONTRAST = re.compile(r"(?:但是|但|可是|不过|却|而是|反而|而且|并且|还有|伴有|伴随|伴)")
_CN_NUM = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


_SPACES = re.compile(r"([^ \t\u3000]*)([ \t\u3000]+|$)")
_CJK = re.compile(r"[\u3400-\u9fff]")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[a-zA-Z]")
_LATIN_WORD = re.compile(r"[a-z][a-z'-]*")
_NEG_END = re.compile(r"(?:没有|没|不|无|未|别|非|否认)$")
_MAX_HITS = 48          # candidate matches examined per concept / numeric pattern per message
_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
             "九": 9}
_CN_RUN = "[零〇一二两三四五六七八九十百]+"
# Chinese numerals are rewritten as digits only next to a measurement
# (血压一百九 -> 血压190, 三十九度八 -> 39.8度)
_CN_DEGREE = re.compile("(" + _CN_RUN + r")(?:点([零〇一二三四五六七八九]+))?度([一二三四五六七八九半])?"
                        r"(?![零〇一二三四五六七八九十])")
_CN_MEASURE = re.compile(
    r"((?:血压|高压|低压|收缩压|舒张压|心率|心跳|脉搏|血氧|饱和度|指脉氧|血糖|体温|烧到|烧了|发烧|量了|测了|测出来"
    r"|只有|掉到|快到|到了|/)[^,，。;；!?！？\d]{0,4}?)(" + _CN_RUN + r")(?:点([零〇一二三四五六七八九]+))?"
    r"(?![零〇一二两三四五六七八九十百])")


def _cn_number(s: str) -> int | None:
    """'一百九' -> 190, '二百二十' -> 220, '三十九' -> 39, '八十' -> 80, '两百' -> 200, '九' -> 9."""
    if not s or any(ch not in _CN_DIGIT and ch not in "十百" for ch in s):
        return None
    total, cur, last_unit = 0, None, 1
    for ch in s:
        if ch == "百":
            total += (cur if cur is not None else 1) * 100
            cur, last_unit = None, 100
        elif ch == "十":
            total += (cur if cur is not None else 1) * 10
            cur, last_unit = None, 10
        else:
            if cur is not None:           # "一九" style digit strings
                cur = cur * 10 + _CN_DIGIT[ch]
            else:
                cur = _CN_DIGIT[ch]
    if cur is not None:
        total += cur * (last_unit // 10 if last_unit == 100 and s[-2] == "百" else 1)
    return total


def _cn_degree_sub(m: re.Match) -> str:
    n = _cn_number(m.group(1))
    if n is None:
        return m.group(0)
    if m.group(2):                                   # 三十九点五度
        tail = "".join(str(_CN_DIGIT[c]) for c in m.group(2))
    else:                                            # 三十九度八 / 三十八度半
        tail = "5" if m.group(3) == "半" else str(_CN_DIGIT[m.group(3)]) if m.group(3) else ""
    return str(n) + ("." + tail if tail else "") + "度"


def _cn_measure_sub(m: re.Match) -> str:
    n = _cn_number(m.group(2))
    if n is None or not (m.group(3) or "十" in m.group(2) or "百" in m.group(2)):  # "心跳一下子" stays
        return m.group(0)
    frac = "".join(str(_CN_DIGIT[c]) for c in m.group(3)) if m.group(3) else ""
    return m.group(1) + str(n) + ("." + frac if frac else "")


# a count of ten or more pills, bottles or packs (吃了一百片 -> 吃了100片); smaller counts stay as words
_CN_COUNT = re.compile("(" + _CN_RUN + r")(?=(?:多|来)?(?:片|粒|颗|丸|瓶|盒|板|袋))")


def _cn_count_sub(m: re.Match) -> str:
    n = _cn_number(m.group(1))
    return str(n) if n is not None and ("十" in m.group(1) or "百" in m.group(1)) else m.group(0)


# a reading written as two numerals around a slash (一百九十五/一百二十 -> 195/120)
_CN_SLASH = re.compile("(" + _CN_RUN + r")(?=\s*/\s*[零〇一二两三四五六七八九十百])")


def mostly_chinese(text: str) -> bool:
    """Whether a text has at least as many Chinese characters as Latin letters. The rules read a text that is not
    through their `english` table (`Triage._from_english`); the n-gram step, trained on Chinese, does not score it
    (ming.safety.ngram_triage)."""
    return len(_HAN.findall(text)) >= len(_LATIN.findall(text))


def cn_numerals_to_digits(text: str) -> str:
    """Rewrite Chinese numerals that are measurements, or counts of ten or more pills / packs, as digits
    (三十九度八 -> 39.8度, 高压一百九 -> 高压190, 一百片 -> 100片)."""
    text = _CN_SLASH.sub(_cn_count_sub, text)
    return _CN_COUNT.sub(_cn_count_sub, _CN_MEASURE.sub(_cn_measure_sub, _CN_DEGREE.sub(_cn_degree_sub, text)))


def _cn_int(s: str) -> float | None:
    """'3' / '三' / '十二' / '二十' -> number (small Chinese numerals only)."""
    if s.isdigit():
        return float(s)
    if not s or any(ch not in _CN_NUM for ch in s):
        return None
    if "十" in s:
        head, _, tail = s.partition("十")
        return float((_CN_NUM[head] if head else 1) * 10 + (_CN_NUM[tail] if tail else 0))
    return float(_CN_NUM[s]) if len(s) == 1 else None


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    rationale: str
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    builtin: str = ""
    tuned_on: tuple[str, ...] = ()


@dataclass
class TriageResult:
    emergency: bool
    rules: list[Rule] = field(default_factory=list)
    escalation: str = ""
    concepts: list[str] = field(default_factory=list)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    @property
    def categories(self) -> list[str]:
        out: list[str] = []
        for r in self.rules:
            if r.category not in out:
                out.append(r.category)
        return out

    def to_dict(self) -> dict:
        return {"emergency": self.emergency, "rule_ids": self.rule_ids,
                "categories": self.categories, "escalation": self.escalation}


@dataclass
class _Facts:
    """What one message says, after negation / scope filtering."""
    concepts: dict[str, int]                      # concept -> first valid position
    temps: list[float]
    fever_word: bool
    infant_months: list[float]
    bp: list[tuple[int, int]]
    glucose: list[float]
    glucose_hi: bool
    spo2: list[float]
    hr: list[float]
    knowledge: bool
    figurative: bool = False                      # a concept match was read as an idiom, a joke or already handled


# numeric extractors (on normalised text)
_TEMP = re.compile(r"(\d{2}(?:\.\d+)?)\s*(?:度|°c|°|℃)(\d)?|(?:体温|烧到|烧了|发烧|发热|高烧|低烧|量了|量|测了|测)[^\d,。血压糖氧心率]{0,3}?(\d{2}(?:\.\d+)?)(?![\d/])"
                   r"|(三十[五六七八九]|四十[一二]?)度([一二三四五六七八九半])?")
_BABY = r"(?:宝宝|宝贝|婴儿|孩子|娃儿|娃娃|娃|小孩|儿子|女儿|闺女|小宝|男宝|女宝|baby|新生儿)"
_AGE = re.compile(
    _BABY + r"(?:才|刚|现在|今年|已经|刚满|满|出生|快|不到|还不到|有|是|的|,)*(\d+|[一二两三四五六七八九十]+)\s*(?:个)?(多|半)?\s*(月|周|天)(?!前|之前|以前|后|以后)"
    r"|(\d+|[一二两三四五六七八九十]+)\s*(?:个)?(多|半)?\s*(月|周|天)(?:大|的" + _BABY + r"|龄|宝宝|婴儿|新生儿)"
    r"|出生(?:才)?(\d+|[一二两三四五六七八九十]+)\s*(天|周)|(新生儿|刚出生|未满月|没满月|还没满月|不满月|满月)")
_BP = re.compile(r"(?:血压|bp|量了一下|测了一下)[^\d。]{0,12}?(\d{2,3})\s*/\s*(\d{2,3})|高压[^\d]{0,3}(\d{2,3})[^\d]{0,4}低压[^\d]{0,3}(\d{2,3})"
                 r"|(?:收缩压|高压|血压[^\d,。]{0,6})(?<!\d)(\d{2,3})(?!\s*/|\d)")
_GLU = re.compile(r"(?:血糖|葡萄糖|glu)[^\d,。]{0,8}?(\d{1,3}(?:\.\d+)?)\s*(mg)?|(?:血糖|血糖仪)[^,。]{0,6}(?:hi|high|爆表|测不出来|显示最高)")
_SPO2 = re.compile(r"(?:血氧饱和度|血氧|氧饱和度|指脉氧|spo2|氧饱)[^\d,。]{0,5}(\d{2,3})")
_HR = re.compile(r"(?:心率|心跳|脉搏|脉率|hr)[^\d,。]{0,5}(\d{2,3})"
                 r"|(?:心率|心跳|脉搏)[^\d,。血体糖氧压]{0,10}(?:测了|量了|测出来|一测)[^\d,。]{0,2}(\d{2,3})")   # r10
_BP_SYMPTOMS = re.compile(r"(?:说话[^,。]{0,3}(?:不清|含糊)|胸口|心口|模糊|发麻|麻了|头痛|头疼|头晕|眼花|视物模糊|看不清|恶心|呕吐|吐了|胸闷|胸痛|胸口疼|喘|气短|说话不清|嘴歪|麻木|无力|意识|抽搐)")
_LOW_SYMPTOMS = re.compile(r"(?:头晕|晕|冷汗|虚汗|乏力|没力气|眼前发黑|黑蒙|心慌|胸闷|发抖|手抖|意识|昏|叫不醒|抽搐|面色苍白|脸色苍白"
                           r"|湿冷|冰凉|反应(?:很|特别)?慢|脸(?:色)?(?:发)?白|没(?:有)?尿|尿(?:也)?没有)")
_DKA = re.compile(r"(?:呕吐|吐了|恶心|腹痛|肚子疼|呼吸深|呼吸很快|烂苹果|酮|意识|昏|嗜睡|叫不醒|口渴得厉害|尿很多)")


MAX_CHECK_CHARS = 20_000  # one message's characters that a check reads: its head and its tail


def bounded_text(text: str, limit: int = MAX_CHECK_CHARS) -> str:
    """Bound what one check costs (~4 µs a character): a message longer than `limit` is read as its first and
    last limit/2 characters, where a patient states the complaint and the question; a pasted document's middle
    is skipped."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n" + text[-half:]


@lru_cache(maxsize=2048)
def _prefixes(pattern: str, k: int = 2, cap: int = 4000) -> frozenset[str] | None:
    """Strings (up to `k` characters) one of which every match of `pattern` starts with; None when that is not
    known. A shorter string means "this, then anything". Lets the analysis skip a concept none of whose
    prefixes occurs in the message (an optimisation only: when unsure it returns None and the pattern runs)."""
    from re import _constants as C
    from re import _parser as sre_parse  # Python >= 3.11

    class Unknown(Exception):
        pass

    def chars_of(op, av) -> set[str]:
        if op is C.LITERAL:
            return {chr(av)}
        if op is C.IN:
            out: set[str] = set()
            for o, a in av:
                if o is C.LITERAL:
                    out.add(chr(a))
                elif o is C.RANGE and a[1] - a[0] < 64:
                    out.update(chr(c) for c in range(a[0], a[1] + 1))
                else:
                    raise Unknown
            return out
        raise Unknown

    def seq(items) -> tuple[set[tuple[str, bool]], bool]:
        """(prefix, open) pairs of a parsed sequence; open = exact so far, the next item extends it."""
        cur: set[tuple[str, bool]] = {("", True)}
        for op, av in items:
            try:
                alts, empty = item(op, av)
            except Unknown:                               # unknown from here on: close what is known
                if ("", True) in cur:
                    raise
                return {(p, False) for p, _ in cur}, False
            nxt: set[tuple[str, bool]] = set()
            for p, o in cur:
                if not o or len(p) >= k:
                    nxt.add((p, False))
                    continue
                for s, so in alts:
                    q = p + s
                    nxt.add((q[:k], False) if len(q) >= k else (q, so))
                if empty:
                    nxt.add((p, o))
            if len(nxt) > cap:
                raise Unknown
            cur = nxt
            if all(not o or len(p) >= k for p, o in cur):
                break
        return cur, ("", True) in cur

    def item(op, av) -> tuple[set[tuple[str, bool]], bool]:
        if op in (C.LITERAL, C.IN):
            return {(c, True) for c in chars_of(op, av)}, False
        if op is C.SUBPATTERN:
            return seq(av[3])
        if op is C.BRANCH:
            out: set[tuple[str, bool]] = set()
            empty = False
            for b in av[1]:
                got, e = seq(b)
                out |= got
                empty = empty or e
            return out, empty
        if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            got, e = seq(sub)
            if hi != 1:                                   # repeated: only its own start is known
                got = {(p, False) for p, _ in got}
            return got, e or lo == 0
        if op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            return {("", True)}, True
        raise Unknown

    try:
        got, _ = seq(sre_parse.parse(pattern))
    except Exception:  # noqa: BLE001
        return None
    found = frozenset(p for p, _ in got)
    return None if "" in found or not found else found


def _split_gate(gate: frozenset[str] | None) -> tuple[frozenset[str], frozenset[str]] | None:
    """(two-character prefixes, one-character prefixes), for set intersections in C."""
    if gate is None:
        return None
    return frozenset(p for p in gate if len(p) == 2), frozenset(p for p in gate if len(p) == 1)


def _gate_open(gate: tuple[frozenset[str], frozenset[str]] | None, chars: set[str], pairs: set[str]) -> bool:
    return gate is None or not gate[0].isdisjoint(pairs) or not gate[1].isdisjoint(chars)


def _first(it, n: int = _MAX_HITS):
    for k, x in enumerate(it):
        if k >= n:
            return
        yield x


_CUE_FIELDS = {"negation_cues", "negation_false", "negation_post", "past_cues", "hypothetical_cues", "chronic_cues",
               "present_cues", "knowledge_cues", "personal_cues", "worsening_cues", "education_cues", "question_cues",
               "affirmative_answer", "figurative_cues", "joke_cues", "laugh_cues", "announce_cues",
               "handled_cues"}


class Triage:
    """Compiled rule set. Use `default_triage()` for the packaged rules."""

    def __init__(self, spec: dict, source: str = "<dict>", exclude: AbstractSet[str] = frozenset(),
                 strict: bool = False, layers_off: AbstractSet[str] = frozenset()):
        """Compile `spec`. An entry tagged `tuned_on` is left out when every id it names is in `exclude`
        (it would not exist had those presentations' messages never been seen); with `strict`, when any is.
        A rule with `layer: NAME` is left out when NAME is in `layers_off` (bench ablation)."""
        self.source = source
        self.layers_off = frozenset(layers_off)
        self.exclude = frozenset(exclude)
        self.strict = strict
        try:
            macros = dict(spec.get("macros", {}))
            for _ in range(3):  # macros may use macros
                for k, v in list(macros.items()):
                    macros[k] = self._expand(v, macros)
            self.context_window = int(spec.get("context_window", 4))
            self.conversation_window = int(spec.get("conversation_window", 12))
            self._typos = dict(spec.get("typos", {}))
            self._typo_re = re.compile("|".join(map(re.escape, sorted(self._typos, key=len, reverse=True)))) if self._typos else None
            english = {" ".join(str(k).lower().split()): str(v) for k, v in dict(spec.get("english", {})).items()}
            self._english = {k.replace(" ", ""): v for k, v in english.items()}  # looked up without spaces
            self._english_re = re.compile(
                r"(?<![a-z'])(?:" + "|".join(re.escape(k).replace(r"\ ", " ?") for k in sorted(english, key=len, reverse=True))
                + r")(?![a-z'])") if english else None
            tuned = dict(spec.get("tuned", {}))    # name -> [{re, tuned_on}] added after the labelled set
            unknown = set(tuned) - set(spec["concepts"]) - _CUE_FIELDS
            if unknown:
                raise MingError(f"'tuned:' in {source} names unknown concepts/cues {sorted(unknown)}")

            def field(key, default=None):
                v = spec.get(key, default) if default is not None else spec[key]
                v = [v] if isinstance(v, (str, dict)) else list(v)
                return v + list(tuned.get(key, []))

            c = lambda key, default=None: re.compile(self._joined(field(key, default), macros) or "(?!)")  # noqa: E731
            self._neg = c("negation_cues")
            self._neg_false = c("negation_false")
            self._neg_post = c("negation_post")
            self._past = c("past_cues")
            self._hypo = c("hypothetical_cues")
            self._chronic = c("chronic_cues")
            self._present = c("present_cues")
            self._knowledge = c("knowledge_cues")
            self._personal = c("personal_cues")
            self._worse = c("worsening_cues")
            self._education = c("education_cues", "(?!)")
            self._question = c("question_cues", "(?!)")
            self._affirm = c("affirmative_answer", "(?!)")
            self._figurative = c("figurative_cues", "(?!)")
            self._joke = c("joke_cues", "(?!)")
            self._laugh = c("laugh_cues", "(?!)")
            self._announce = c("announce_cues", "(?!)")
            self._handled = c("handled_cues", "(?!)")
            self._figurative_exempt = self._names(spec.get("figurative_exempt", []))
            self._laugh_exempt = self._figurative_exempt | self._names(spec.get("laugh_exempt", []))
            self._chronic_exempt = self._names(spec.get("chronic_exempt", []))
            self._past_exempt = self._names(spec.get("past_exempt", []))
            self._negation_exempt = self._names(spec.get("negation_exempt", []))
            self._question_exempt = self._names(spec.get("question_exempt", []))
            self._handled_exempt = self._names(spec.get("handled_exempt", []))
            self._intent = self._names(spec.get("laugh_exempt", []))   # intent to die or to harm
            self.concepts: dict[str, re.Pattern] = {}
            for name, pats in spec["concepts"].items():
                pats = [pats] if isinstance(pats, (str, dict)) else list(pats)
                joined = self._joined(pats + list(tuned.get(name, [])), macros)
                self.concepts[name] = re.compile(joined) if joined else re.compile("(?!)")
            self._gate = {name: _split_gate(_prefixes(rx.pattern)) for name, rx in self.concepts.items()}
            self.rules: list[Rule] = []
            for r in spec["rules"]:
                rule = Rule(id=r["id"], category=r["category"], rationale=r["rationale"],
                            all=tuple(r.get("all", ())), any=tuple(r.get("any", ())),
                            none=tuple(r.get("none", ())), builtin=r.get("builtin", ""),
                            tuned_on=tuple(r.get("tuned_on", ())))
                for name in rule.all + rule.any + rule.none:
                    if name not in self.concepts:
                        raise MingError(f"rule {rule.id} uses unknown concept '{name}' in {source}; "
                                        f"define it under concepts:")
                if rule.builtin and not hasattr(self, f"_b_{rule.builtin}"):
                    raise MingError(f"rule {rule.id} uses unknown builtin '{rule.builtin}' in {source}")
                if self._dropped(rule.tuned_on) or r.get("layer") in self.layers_off:
                    continue
                self.rules.append(rule)
            self.vetoes: list[tuple[frozenset[str], re.Pattern]] = []
            for v in spec.get("vetoes", []):  # {rules: [ids], re: ..., tuned_on: [...]}: rule is not fired when re matches
                if not self._dropped(v.get("tuned_on", ())):
                    self.vetoes.append((frozenset(v["rules"]), re.compile(self._expand(v["re"], macros))))
            self.escalations: dict[str, str] = dict(spec["escalations"])
            for rule in self.rules:
                if rule.category not in self.escalations:
                    raise MingError(f"rule {rule.id}: category '{rule.category}' has no escalation text in {source}")
        except (KeyError, TypeError, re.error) as exc:
            raise MingError(f"triage rule file {source} is invalid: {exc!r}; fix the file or "
                            f"use the packaged rules (ming.safety.triage.default_triage())") from exc
        self._analyse = lru_cache(maxsize=4096)(self._analyse_uncached)

    def _dropped(self, tuned_on) -> bool:
        tags = set(tuned_on or ())
        if not tags or not self.exclude:
            return False
        return bool(tags & self.exclude) if self.strict else tags <= self.exclude

    def _names(self, items) -> set[str]:
        """A list of names, each a string or {name, tuned_on}."""
        return {i if isinstance(i, str) else i["name"] for i in items
                if isinstance(i, str) or not self._dropped(i.get("tuned_on", ()))}

    def _joined(self, pats, macros: dict[str, str]) -> str:
        """A pattern field: a string, or a list of strings / {re, tuned_on} entries, joined by '|'."""
        if isinstance(pats, (str, dict)):
            pats = [pats]
        out = []
        for p in pats:
            if isinstance(p, dict):
                if self._dropped(p.get("tuned_on", ())):
                    continue
                p = p["re"]
            out.append(f"(?:{self._expand(p, macros)})")
        return "|".join(out)

    @staticmethod
    def _expand(pattern: str, macros: dict[str, str]) -> str:
        for k, v in macros.items():
            pattern = pattern.replace("{" + k + "}", v)
        return pattern

    @classmethod
    def from_file(cls, path: str | Path) -> "Triage":
        import yaml

        p = Path(path)
        if p.is_dir():
            raise MingError(f"--rules {p} is a folder; pass a triage rule YAML file (the packaged one is "
                            "ming/safety/rules/triage.yaml)")
        if not p.is_file():
            raise MingError(f"triage rule file not found: {p}")
        raw = p.read_bytes()
        if b"\x00" in raw:
            raise MingError(f"triage rule file {p} looks binary (NUL byte); pass a YAML text file")
        try:
            spec = yaml.safe_load(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise MingError(f"triage rule file {p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(exc, "problem", None) or type(exc).__name__
            raise MingError(f"triage rule file {p} is not valid YAML{where}: {what}") from None
        if not isinstance(spec, dict) or not spec.get("rules"):
            found = "nothing (empty file)" if spec is None else type(spec).__name__
            raise MingError(f"triage rule file {p} must be a mapping with a 'rules' list, found {found}; "
                            "copy ming/safety/rules/triage.yaml as a starting point")
        return cls(spec, str(p))

    # ---- text analysis -------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        return self._normalize_gaps(text)[0]

    def _normalize_gaps(self, text: str) -> tuple[str, list[int]]:
        """The normalised text, and the positions in it where a space stood between two Chinese characters
        ("胸口痛 出冷汗"): messages typed in chat style use a space as a comma, so a negation does not reach
        across one ("三天没睡觉 说自己是神"). A space right after a negation word ("没有 发烧") is not a gap."""
        t = unicodedata.normalize("NFKC", text).lower()
        t = t.replace("℃", "°c").replace("～", "~")
        t = cn_numerals_to_digits(t)
        if self._typo_re is not None:  # first: pinyin ("xiong kou tong") is a typo, not an English word
            t = self._typo_re.sub(lambda m: self._typos[m.group(0)], t)
        t = self._from_english(t)
        out: list[str] = []
        gaps: list[int] = []
        n = 0
        for m in _SPACES.finditer(t):
            piece = m.group(1)
            out.append(piece)
            n += len(piece)
            if m.group(2) and piece and _CJK.match(piece[-1]) and not _NEG_END.search(piece) \
                    and m.end() < len(t) and _CJK.match(t[m.end()]):
                gaps.append(n)
        return "".join(out), gaps

    def _from_english(self, t: str) -> str:
        """A message mostly in English (more Latin letters than Chinese characters) read through the `english` table:
        its red-flag phrases, negations, people and times become the Chinese words the concepts match ("crushing chest
        pain spreading to my left arm" -> "压榨样胸痛 放射到 我的 左臂"), and the words the table does not know are
        dropped, so that they do not stand between two parts of a pattern. Chinese text is left as it is."""
        if self._english_re is None or mostly_chinese(t):
            return t
        t = re.sub(r"\s+", " ", t.replace("\u2019", "'"))
        t = self._english_re.sub(lambda m: f" {self._english[m.group(0).replace(' ', '')]} ", t)
        t = _LATIN_WORD.sub(" ", t)
        return re.sub(r" {2,}", " ", t).strip()

    def _negated(self, t: str, start: int, end: int, cstart: int, cend: int, gap: int = 0) -> bool:
        """A negation cue shortly before the match in its clause (not across a chat-style space: `gap`), or
        the clause ends with a negation right after it."""
        prefix = t[max(cstart, gap, start - 24):start]
        cut = None
        for m in _CONTRAST.finditer(prefix):
            cut = m.end()
        if cut is not None:
            prefix = prefix[cut:]
        prefix = prefix[-10:]
        window = self._neg_false.sub(lambda m: "_" * len(m.group(0)), prefix + t[start:start + 4])
        for m in self._neg.finditer(window):
            if m.start() < len(prefix):
                return True
        return bool(self._neg_post.match(t[end:cend + 1]))

    def _analyse_uncached(self, raw: str) -> _Facts:
        t, gaps = self._normalize_gaps(raw)
        clauses = self._spans(_CLAUSE_SEP, t)
        sentences = self._spans(_SENT_SEP, t)
        c_starts = [a for a, _ in clauses]
        s_starts = [a for a, _ in sentences]
        general = not self._personal.search(t)
        knowledge = (general and bool(self._knowledge.search(t))) or bool(self._education.search(t))
        # a bare question ("百草枯中毒为什么这么难救") is education too, except for intent words
        # ("每天都在想怎么结束自己的生命"): concepts in question_exempt are still read
        question = (not knowledge and general and bool(self._question.search(t))
                    and not self._present.search(t))
        worsening = bool(self._worse.search(t))
        # cue positions, found once per message (keeps the work linear in the message length)
        hypo = [m.start() for m in self._hypo.finditer(t)]
        past = [m.start() for m in self._past.finditer(t)]
        present = [m.start() for m in self._present.finditer(t)]
        chronic = [m.start() for m in self._chronic.finditer(t)]
        handled = [m.start() for m in self._handled.finditer(t)]

        def span_of(spans, starts, pos):
            return spans[max(0, bisect.bisect_right(starts, pos) - 1)]

        def last_in(cues, lo, hi):                 # last cue start in [lo, hi), or -1
            i = bisect.bisect_left(cues, hi) - 1
            return cues[i] if i >= 0 and cues[i] >= lo else -1

        def any_in(cues, lo, hi):                  # a cue start in [lo, hi)
            i = bisect.bisect_left(cues, lo)
            return i < len(cues) and cues[i] < hi

        def scoped(pos: int, name: str) -> bool:
            ss, se = span_of(sentences, s_starts, pos)
            if any_in(hypo, ss, pos):
                return True
            # already handled (救护车已经拉走了, 人已经在医院, 虚惊一场): the whole sentence, before or after the cue
            if name not in self._handled_exempt and not worsening and any_in(handled, ss, se + 1):
                masked.append(name)
                return True
            cs, ce = span_of(clauses, c_starts, pos)
            present_in_clause = any_in(present, cs, ce + 1)
            if name not in self._past_exempt:
                if last_in(past, ss, pos) > last_in(present, ss, pos):
                    return True
                if any_in(past, pos + 1, ce + 1) and not present_in_clause:
                    return True
            if name not in self._chronic_exempt and name != "_age" and not worsening:
                if any_in(chronic, cs, ce + 1) and not present_in_clause:
                    return True
            return False

        def after_gap(pos: int) -> int:            # the last gap at or before pos (0: none)
            i = bisect.bisect_right(gaps, pos)
            return gaps[i - 1] if i else 0

        # figurative spans (累死了, 想死你了, 钱包大出血, 看烟花 on a roof; docs/triage.md "Round 9"): a concept
        # match overlapping one is not read, except the concepts in figurative_exempt (means, overdose, ...)
        # (laugh spans: 哈哈 / 开玩笑 after the words, or a joke tag for the whole message, mask fewer concepts)
        fig = [] if knowledge else [(m.start(), m.end()) for m in _first(self._figurative.finditer(t))]
        laugh = [] if knowledge else [(0, len(t))] if self._joke.search(t) else \
            [(m.start(), m.end()) for m in _first(self._laugh.finditer(t))]
        # announcing one's own collapse as a reaction ("我要抽搐了", round 10) masks even the exempt concepts
        # (a real seizure or blackout is not announced in the first person future), except intent (`laugh_exempt:`)
        announce = [] if knowledge else [(m.start(), m.end()) for m in _first(self._announce.finditer(t))]

        def any_over(spans, a, b):
            return any(x < b and a < y for x, y in spans)

        concepts: dict[str, int] = {}
        masked: list[str] = []                     # concepts dropped as figurative, a joke, announced or handled
        chars = set(t)
        pairs = {t[i:i + 2] for i in range(len(t) - 1)}
        if not knowledge:
            for name, rx in self.concepts.items():
                if question and name not in self._question_exempt:
                    continue
                if not _gate_open(self._gate[name], chars, pairs):
                    continue
                for k, m in enumerate(rx.finditer(t)):
                    if k >= _MAX_HITS:
                        break
                    cs, ce = span_of(clauses, c_starts, m.start())
                    if (fig and name not in self._figurative_exempt and any_over(fig, m.start(), m.end())) \
                            or (laugh and name not in self._laugh_exempt and any_over(laugh, m.start(), m.end())) \
                            or (announce and name not in self._intent and any_over(announce, m.start(), m.end())):
                        masked.append(name)
                        continue
                    if name not in self._negation_exempt and self._negated(t, m.start(), m.end(), cs, ce,
                                                                           after_gap(m.start())):
                        continue
                    if scoped(m.start(), name):
                        continue
                    concepts[name] = m.start()
                    break

        def ok(pos: int, kind: str = "_number") -> bool:
            cs, ce = span_of(clauses, c_starts, pos)
            return not knowledge and not question and not scoped(pos, kind) and not self._negated(t, pos, pos, cs, ce) \
                and not any_over(fig, pos, pos + 1)

        temps: list[float] = []
        for m in _first(_TEMP.finditer(t)):
            if m.group(1):
                v = float(m.group(1)) + (float(m.group(2)) / 10 if m.group(2) else 0)
            elif m.group(3):
                v = float(m.group(3))
            else:
                v = _cn_int(m.group(4)) or 0
                if m.group(5):
                    v += 0.5 if m.group(5) == "半" else (_cn_int(m.group(5)) or 0) / 10
            if 34 <= v <= 43 and ok(m.start()):
                temps.append(v)
        fever_word = "fever" in concepts
        months: list[float] = []
        for m in _first(_AGE.finditer(t)):
            if not ok(m.start(), "_age"):
                continue
            if m.group(9):
                months.append(0.5 if m.group(9) in ("新生儿", "刚出生", "未满月", "没满月", "还没满月", "不满月") else 1.0)
                continue
            if m.group(7):
                n, more, unit = _cn_int(m.group(7)), None, m.group(8)
            else:
                n, more, unit = (_cn_int(m.group(1)), m.group(2), m.group(3)) if m.group(1) else (
                    _cn_int(m.group(4)), m.group(5), m.group(6))
            if n is None:
                continue
            n += 0.5 if more else 0
            months.append(n if unit == "月" else n / 4.3 if unit == "周" else n / 30.0)
        bp = []
        for m in _first(_BP.finditer(t)):
            if not ok(m.start()):
                continue
            if m.group(1):
                bp.append((int(m.group(1)), int(m.group(2))))
            elif m.group(3):
                bp.append((int(m.group(3)), int(m.group(4))))
            else:
                bp.append((int(m.group(5)), 0))
        glucose, glu_hi = [], False
        for m in _first(_GLU.finditer(t)):
            if not ok(m.start()):
                continue
            if m.group(1) is None:
                glu_hi = True
                continue
            v = float(m.group(1))
            if m.group(2) or v > 45:
                v = v / 18.0
            glucose.append(v)
        spo2 = [float(m.group(1)) for m in _first(_SPO2.finditer(t)) if ok(m.start()) and 40 <= float(m.group(1)) <= 100]
        hr = [float(m.group(1) or m.group(2)) for m in _first(_HR.finditer(t))
              if ok(m.start()) and 15 <= float(m.group(1) or m.group(2)) <= 260]
        return _Facts(concepts, temps, fever_word, months, bp, glucose, glu_hi, spo2, hr, knowledge, bool(masked))

    @staticmethod
    def _spans(sep: re.Pattern, t: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for m in sep.finditer(t):
            spans.append((start, m.start()))
            start = m.end()
        spans.append((start, len(t)))
        return spans

    # ---- numeric builtins (facts merged over the window) ---------------------------------
    def _b_infant_fever(self, f: _Facts, text: str) -> bool:
        if not f.infant_months:
            return False
        age = min(f.infant_months)
        tmax = max(f.temps, default=None)
        if tmax is None:
            return age <= 3.0 and f.fever_word
        return (age <= 3.0 and tmax >= 38.0) or (age <= 6.0 and tmax >= 39.0)

    def _b_temp_extreme(self, f: _Facts, text: str) -> bool:
        return max(f.temps, default=0) >= 41.0

    def _b_bp_crisis(self, f: _Facts, text: str) -> bool:
        for s, d in f.bp:
            if s >= 220 or d >= 130:
                return True
            if (s >= 180 or d >= 120) and _BP_SYMPTOMS.search(text):
                return True
        return False

    def _b_bp_low(self, f: _Facts, text: str) -> bool:
        # CN level 1: systolic < 70 whatever else is said; up to 80 with a symptom of poor perfusion
        return any(40 <= s < 70 or (0 < s <= 80 and _LOW_SYMPTOMS.search(text)) for s, _ in f.bp)

    def _b_glucose_extreme(self, f: _Facts, text: str) -> bool:
        if f.glucose_hi:
            return True
        for v in f.glucose:
            if 0 < v < 3.0 or v >= 33.3 or (v >= 16.7 and _DKA.search(text)):
                return True
        return False

    def _b_spo2_low(self, f: _Facts, text: str) -> bool:
        return any(v < 90 for v in f.spo2)

    def _b_hr_extreme(self, f: _Facts, text: str) -> bool:
        if "child" in f.concepts:
            return False
        for v in f.hr:
            if v >= 180 or (v >= 150 and _LOW_SYMPTOMS.search(text)) or (v <= 40 and _LOW_SYMPTOMS.search(text)):
                return True
        return False

    # ---- public API ----------------------------------------------------------------------
    def check(self, text: str, context: Sequence[str] = (), window: int | None = None) -> TriageResult:
        """Triage `text` (the newest user message) with up to `window`-1 (default context_window-1)
        earlier user messages."""
        keep = (window or self.context_window) - 1
        msgs = [bounded_text(m) for m in (([m for m in list(context)[-keep:] if m] if keep > 0 else []) + [text or ""])]
        facts = [self._analyse(m) for m in msgs]
        merged = _Facts({}, [], False, [], [], [], False, [], [], facts[-1].knowledge)
        for f in facts:
            for k, v in f.concepts.items():
                merged.concepts.setdefault(k, v)
            merged.temps += f.temps
            merged.fever_word |= f.fever_word
            merged.infant_months += f.infant_months
            merged.bp += f.bp
            merged.glucose += f.glucose
            merged.glucose_hi |= f.glucose_hi
            merged.spo2 += f.spo2
            merged.hr += f.hr
        current = facts[-1].concepts
        normed = [self.normalize(m) for m in msgs]
        joined = "。".join(normed)
        vetoed = set().union(*(ids for ids, rx in self.vetoes if rx.search(normed[-1]))) if self.vetoes else set()
        fired: list[Rule] = []
        have = merged.concepts
        for rule in self.rules:
            if rule.id in vetoed:
                continue
            if rule.builtin:
                if getattr(self, f"_b_{rule.builtin}")(merged, joined):
                    fired.append(rule)
                continue
            if rule.all and not all(c in have for c in rule.all):
                continue
            if rule.any and not any(c in have for c in rule.any):
                continue
            if rule.none and any(c in current for c in rule.none):
                continue
            if not rule.all and not rule.any:
                continue
            fired.append(rule)
        return TriageResult(bool(fired), fired, self.escalation_text(fired) if fired else "", sorted(have))

    def is_education(self, texts: Sequence[str]) -> bool:
        """Whether every one of these user messages is a health-education question ("心梗有哪些早期症状？": no
        personal marker, a knowledge cue), as the rules read them. The model yes/no step is not asked then: such
        questions were most of its false alarms (docs/triage.md)."""
        return bool(texts) and all(self._analyse(bounded_text(t)).knowledge for t in texts)

    def is_figurative(self, texts: Sequence[str]) -> bool:
        """Whether the newest of these user messages used its red-flag words only as an idiom, a joke, an announced
        reaction or about someone already handled ("看到账单 休克了", "救护车已经拉走了") — a word was read that way and
        no concept is left in it or in the earlier messages of the triage window. The model yes/no step is not asked then (round 10: such messages were most of its false
        alarms once the rules read them)."""
        if not texts:
            return False
        f = self._analyse(bounded_text(texts[-1]))
        return f.figurative and not f.concepts and not f.knowledge \
            and not any(self._analyse(bounded_text(t)).concepts for t in texts[-self.context_window:-1])

    def check_messages(self, messages: Iterable[dict]) -> TriageResult:
        """Triage a chat history: [{'role': 'user'|'assistant'|'system', 'content': str}, ...]."""
        users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
        if not users:
            return TriageResult(False)
        return self.check(users[-1], users[:-1])

    def user_turns(self, messages: Iterable[dict]) -> list[str]:
        """The user turns of a chat; a short yes-answer ("有", "是的，一直在出") to an assistant question
        is read together with that question ("有没有出冷汗？" + "有" -> "出冷汗 有")."""
        out: list[str] = []
        question = ""
        for m in messages:
            role, content = m.get("role"), str(m.get("content") or "")
            if role == "assistant":
                question = content
            elif role == "user":
                if question and len(content) <= 16 and self._affirm.match(self.normalize(content)):
                    asked = [q for q in re.split(r"(?<=[?？])", question) if q.strip().endswith(("?", "？"))]
                    if asked:
                        content = _strip_question(asked[-1]) + "。" + content
                out.append(content)
                question = ""
        return out

    def escalated_in(self, messages: Iterable[dict]) -> set[str]:
        """Categories whose escalation text an assistant turn of this chat already carries (shown before)."""
        said = [str(m.get("content") or "") for m in messages if m.get("role") == "assistant"]
        return {cat for cat, text in self.escalations.items()
                if cat not in ("header", "footer") and any(text in a for a in said)}

    def assess_conversation(self, messages: Iterable[dict],
                            already_escalated: AbstractSet[str] = frozenset()) -> "ConversationTriage":
        """Triage a whole chat: findings add up over the last `conversation_window` user turns (with
        answers to the assistant's questions), and an escalation whose key (the rule's category) is in
        `already_escalated` is not shown again. Pass the returned `escalated` set back next turn."""
        users = self.user_turns(messages)
        if not users:
            return ConversationTriage(TriageResult(False), [], "", set(already_escalated))
        res = self.check(users[-1], users[:-1], window=self.conversation_window)
        new = [r for r in res.rules if r.category not in already_escalated]
        return ConversationTriage(res, new, self.escalation_text(new) if new else "",
                                  set(already_escalated) | {r.category for r in res.rules})

    def escalation_text(self, rules: Sequence[Rule]) -> str:
        cats: list[str] = []
        for r in rules:
            if r.category not in cats:
                cats.append(r.category)
        lines = [self.escalations["header"]]
        lines += [f"- {self.escalations[c]}" for c in cats[:3]]
        lines.append(self.escalations["footer"].format(rules=", ".join(r.id for r in rules)))
        return "\n".join(lines)


@dataclass
class ConversationTriage:
    """What `Triage.assess_conversation` found.

    result: every rule firing over the conversation; new: the rules whose key (category) had not been
    escalated before; escalation: the text to show now (only for `new`, "" when nothing new);
    escalated: the keys escalated so far, to pass back as `already_escalated` on the next turn."""
    result: TriageResult
    new: list[Rule]
    escalation: str
    escalated: set[str]

    @property
    def emergency(self) -> bool:
        return self.result.emergency

    @property
    def show(self) -> bool:
        return bool(self.new)

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "escalation": self.escalation, "new_rule_ids": [r.id for r in self.new],
                "escalated": sorted(self.escalated)}


_QUESTION_WORDS = re.compile(r"(?:请问|您|你|有没有|是不是|是否|会不会|有无|吗|呢|[?？])")


def _strip_question(q: str) -> str:
    """'请问胸口疼的时候有没有出冷汗？' -> '胸口疼的时候出冷汗'"""
    return _QUESTION_WORDS.sub("", q).strip()


@lru_cache(maxsize=1)
def default_triage() -> Triage:
    """The packaged rule set, compiled once per process."""
    import yaml

    text = resources.files("ming.safety").joinpath("rules/triage.yaml").read_text(encoding="utf-8")
    return Triage(yaml.safe_load(text), "ming/safety/rules/triage.yaml")


def triage(text: str, context: Sequence[str] = ()) -> TriageResult:
    return default_triage().check(text, context)
