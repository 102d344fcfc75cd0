"""Hold the model's words to the findings ming computed for a pasted report.

    violations = check_sentence(sentence, findings)  # findings = ming.safety.report.parse_report(text)
    check = ReportPostCheck(findings)                # the grounding stage's post-check (grounding_stage.py)

A *claim* is a test name (report aliases, tables/analyte_aliases.yaml) followed in the same clause by a
direction word (偏高/升高/降低/正常/异常/阳性 …, with negation "不高"/"没有升高"); values, ranges and brackets
in between do not count, another subject takes the direction (心率 and the other subjects the reference table grades
are judged themselves; 体温 … are not). Conditional or general sentences
("如果血糖升高…", "以防止…") and causes listed after 见于 / 原因是 make no claim. `AnswerReader` reads an answer
sentence by sentence for both the streaming and the whole-answer check (a heading line naming a test is the
subject of the bullets under it). A claim contradicts a finding when the direction
cannot be true of its graded status; ungraded findings are never contradicted. A claim about a test the
report does not contain is an "unreported" violation (flagged; blocking only when asked).

`compose_explanation(findings)` writes the explanation ming shows instead of a contradicting one: each
abnormal value, what it commonly means (tables/abnormal_meanings.yaml) and the source. `ReportPostCheck`
is the policy as a post-check of the turn pipeline (`ming.respond.Pipeline`, which streams, holds back the
unfinished sentence and regenerates): regenerate once with the contradiction named, else compose, then the
model's general advice if it names no test.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources

from ming.respond import Regenerate, split_sentences
from ming.safety.report import (
    STATUS_ZH,
    Finding,
    _norm_alias,
    _trie_regex,
    _unit_like,
    is_abnormal,
    load_table,
)

# ---- direction words -------------------------------------------------------------------------------
_DIR_WORDS = [
    ("normal", r"正常高值|正常范围内?|正常水平|正常值?(?![值范参人情运工生饮作现])|未见(?:明显)?异常|无(?:明显)?异常|没有(?:明显)?异常|在参考(?:范围|区间)内|(?:符合|处于|位于)参考(?:范围|区间)|阴性"
               r"|符合(?:正常|参考)?标准|(?:理想|合适|适合|适宜|合理|健康)(?:的)?(?:范围|区间|水平)"),
    ("abnormal", r"不正常|异常|阳性"),
    ("high", r"偏高|升高|增高|增多|增加|超标|(?:超出|超过|高于|高出)了?(?:正常|参考)(?:范围|区间|值|上限)?|超出|过高|高于|较高"
             r"|偏多|上升|高出|高浓度|浓度(?:很|较|偏|过)?高|(?<![正常最])高值|↑"),
    ("low", r"偏低|降低|减低|减少|下降|过低|(?:低于|不到)了?(?:正常|参考)(?:范围|区间|值|下限)?|低于|较低|偏少|不足|低浓度"
            r"|浓度(?:很|较|偏|过)?低|(?<![正常最])低值|↓"),
]
_DIR_RE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _DIR_WORDS))
_SHORT_LEAD = r"(?:稍|略|有点|有些|比较|较|很|太|偏|都|均|也|明显|轻度|显著|有所|稍微|略微)?"
_SHORT_DIR = re.compile(r"^(?P<neg>不|没|并不|不算)?" + _SHORT_LEAD + r"(?P<d>高|低)(?![血压糖脂钾钠钙尿蛋白密])")
_NEG = re.compile(r"(?:不|没有?|未|无|并非|并不|并没有|不算)(?:明显|太|很|特别|怎么)?$")
# "不在正常范围内", "不符合肾功能检查的正常范围": a negated verb between the name and the direction
_NEG_VERB = re.compile(r"(?:不|没有?|未|并不|并没有)(?:在|属于|符合|处于|达到|位于)")
_NEGATED = {"high": "not_high", "low": "not_low", "normal": "abnormal", "abnormal": "normal"}
# a sentence that states no fact about this patient: conditions, questions, alternatives
_NO_CLAIM = re.compile(r"如果|假如|若是|倘若|一旦|万一|[?？]$|^若|^如[^何此下今]"
                       r"|(?:正常|偏高|偏低|升高|降低|异常|阳性|阴性)\s*(?:/|或|还是|或者)\s*(?:正常|偏高|偏低|升高|降低|异常|阳性|阴性)")
# a clause that states none: prevention, whether, a general range ("以防止血红蛋白升高", "（参考范围为3.1-8 mmol/L）");
# the other clauses of its sentence still speak ("肾功能是正常的，因为尿素…（参考范围为3.1-8 mmol/L）")
_NO_CLAIM_CLAUSE = re.compile(r"是否|与否|有无|有没有|防止|避免|以免|预防|警惕|恢复正常|降至正常|回到正常|趋于正常"
                              r"|正常值(?:是|为|在)|正常范围(?:是|为)|参考(?:范围|区间|值)(?:是|为)")
_CLAUSE_MARK = "，,；;。：:！!"
_JOIN = re.compile(r"^(?:[\s、,，/()（）]|和|与|及|以及|跟|还有|、)*$")
_AGAIN = re.compile(r"^(?:值?(?:为|是)[\s:：]*)?[\s,，、;；:：↑↓*_→]*(?:但|但是|而且|也|又|即|就是|属于|是)?[\s,，*_]*$")
_ALL = re.compile(r"(?:都|均|全|全部|全都)(?:是|在|属于|处于)?$")
_CLAUSE_GAP = 24  # characters allowed between a test name and its direction word, values and brackets not counted
# what does not count towards the gap: a bracket ("（ALP）", "（报告所印参考范围）"), a value, range or unit
# ("98 U/L", "参考 45–125 U/L", "165/102 mmHg", "13.5×10^9/L")
_BRACKET = re.compile(r"[（(][^（）()]{0,40}[）)]")
_VALUE = re.compile(_BRACKET.pattern + r"|[<>≤≥]?\d+(?:\.\d+)?(?:\s*[-–~～/]\s*\d+(?:\.\d+)?)?(?:\s*[×x*]\s*10\^?\d+)?"
                    r"(?:\s*(?:[a-zμµ%/^·\d.]+|次/分|岁))?")
# a normal-direction word that labels a range ("正常值 3.5–9.5", "正常范围：<5.2") says nothing about this value
_RANGE_LABEL = re.compile(r"[\s*_]*[:：为是在]?[\s*_]*(?:[<>≤≥]\s*\d|\d+(?:\.\d+)?\s*[-–~～]\s*\d)")
# "常见于肾功能下降、脱水…", "常见原因有缺铁…", "常与贫血同时出现": what follows lists causes or associations in
# general, no statement about this report
_CAUSES = re.compile(r"(?:常|多|也|可|亦|还)?见于|原因(?:有|是|为|包括)|(?<![异正增偏较过])(?:常|多)与")

CONSISTENT = {
    "high": {"high", "abnormal", "not_low"},
    "low": {"low", "abnormal", "not_high"},
    "normal": {"normal", "not_high", "not_low"},
    "abnormal": {"abnormal", "high", "not_low"},
}


@dataclass
class Claim:
    alias: str          # the words in the answer
    keys: tuple         # test keys it may mean
    kind: str           # "single" | "panel" | "either"
    direction: str      # high | low | normal | abnormal | not_high | not_low
    sentence: str
    condition: bool = False  # a condition name ("高血脂") or the whole report ("这些数值都正常", kind "report")
    overall: str = ""        # the key that grades the whole group when reported ("血压" -> BP)
    every: bool = False      # said of every member ("各项指标都偏低", "转氨酶都偏高"), not of one of them
    count: int = 0           # "以下是三个异常项目": this many results are so (kind "report")
    spans: tuple = field(default=(), compare=False)  # (start, end) in the normalised sentence of the words it rests on

    @property
    def text(self) -> str:
        if self.kind == "report":
            return self.alias
        if self.condition:
            return ("没有" if self.direction.startswith("not_") or self.direction == "normal" else "") + self.alias
        words = {"not_high": "不高", "not_low": "不低"}
        return self.alias + words.get(self.direction, STATUS_ZH.get(self.direction, self.direction))


@dataclass
class Violation:
    claim: Claim
    kind: str                      # "contradiction" | "unreported"
    findings: list = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "unreported":
            return f"回答说“{self.claim.text}”，但报告里没有这一项"
        got = "；".join(f"{f.name} {f.value_text}，{STATUS_ZH[f.status]}" for f in self.findings)
        return f"回答说“{self.claim.text}”，但检验结果是：{got}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "claim": self.claim.text, "direction": self.claim.direction,
                "tests": list(self.claim.keys), "sentence": self.claim.sentence, "message": self.describe()}


@dataclass
class _Aliases:
    regex: re.Pattern
    resolve: dict   # normalised alias -> (keys, kind)
    conditions: dict = field(default_factory=dict)   # condition name -> (keys, kind, direction)
    condition_re: re.Pattern | None = None
    overall: dict = field(default_factory=dict)      # alias or condition name -> key grading the whole group
    subject_re: re.Pattern | None = None             # subjects that are not judged (心率, 体重 …)
    short_re: re.Pattern | None = None               # short names read only right before a direction ("钾偏高")
    graded_subjects: frozenset = frozenset()         # subjects that are also tests of the table (心率 -> HR): judged
    short_head: re.Pattern | None = None             # a short name heading a line or item ("**钾（K）**：3.2 mmol/L")


@lru_cache(maxsize=1)
def _aliases() -> _Aliases:
    import yaml

    spec = yaml.safe_load(_table_text("analyte_aliases.yaml"))
    table = load_table()
    skip = {_norm_alias(a) for a in spec.get("skip", [])}
    resolve: dict[str, tuple] = {a: ((k,), "single") for a, k in table.alias_to_key.items() if a not in skip and k}
    for a, k in (spec.get("extra") or {}).items():
        resolve[_norm_alias(a)] = ((k,), "single")
    overall = {}
    for a, g in (spec.get("groups") or {}).items():
        resolve[_norm_alias(a)] = (tuple(g["members"]), g["kind"])
        if g.get("overall"):
            overall[_norm_alias(a)] = g["overall"]
    for a, routes in table.by_unit.items():
        if a not in skip and resolve.get(a, ((), ""))[1] == "single":
            resolve[a] = (tuple(dict.fromkeys(k for u, k in routes.items() if u != "default")), "either")
    words = sorted(resolve, key=len, reverse=True)
    conds = {_norm_alias(t): (tuple(c["members"]), c["kind"], c["direction"])
             for t, c in (spec.get("conditions") or {}).items()}
    overall.update({_norm_alias(t): c["overall"] for t, c in (spec.get("conditions") or {}).items() if c.get("overall")})
    subjects = sorted({_norm_alias(s) for s in spec.get("subjects") or []}, key=len, reverse=True)
    # a subject the reference table grades (心率 -> HR) is judged when the report has it: "心率 88 次/分属于偏高"
    graded = {s: table.alias_to_key[s] for s in subjects if s in table.alias_to_key}
    for a, k in graded.items():
        resolve.setdefault(a, ((k,), "single"))
    short = {_norm_alias(a): k for a, k in (spec.get("short_names") or {}).items()}
    regex = re.compile(r"(?<![a-z])(?:" + _trie_regex(words) + r")(?![a-z])")
    for a, k in short.items():
        resolve.setdefault(a, ((k,), "single"))
    short_re = re.compile(r"(?:" + _trie_regex(sorted(short)) + r")(?=(?:离子)?(?:的)?(?:含量|水平|浓度|值)?" + _SHORT_LEAD
                          + r"(?:偏高|偏低|升高|降低|增高|减低|过高|过低|较高|较低|正常|异常|高|低))") if short else None
    short_head = re.compile(r"^[\s>#*_\-•·+]*(?:(?:\d+|[一二三四五六七八九十]+)\s*[.、)）]\s*)?[*_]*(?P<n>" + _trie_regex(sorted(short))
                            + r")(?:离子)?[*_]*\s*(?=[（(:：，,]|\s+\d)") if short else None
    return _Aliases(regex, resolve, conds, re.compile(_trie_regex(sorted(conds, key=len, reverse=True))) if conds else None,
                    overall, re.compile(_trie_regex(subjects)) if subjects else None, short_re, frozenset(graded), short_head)


def _table_text(name: str) -> str:
    return resources.files("ming.safety").joinpath(f"tables/{name}").read_text(encoding="utf-8")


def _names_a_test(text: str) -> bool:
    return bool(_aliases().regex.search(unicodedata.normalize("NFKC", text).lower()))


def extract_claims(sentence: str) -> list[Claim]:
    """Every (test, direction) statement in one sentence; [] for conditional / general sentences.

    A direction belongs to the nearest test named before it in the same clause: values, ranges, units and
    brackets in between do not count towards the gap ("碱性磷酸酶（ALP）：98 U/L，参考 45–125 U/L（…），偏高"),
    another subject in between takes it ("血压 165/102 mmHg，心率 88 次/分属于正常高值": about 心率)."""
    s = unicodedata.normalize("NFKC", sentence)
    low = s.lower()
    if not low.strip() or _NO_CLAIM.search(low.strip()):
        return []
    s, low = _blank_no_claim_clauses(s, low)
    cause = _CAUSES.search(low)
    if cause:  # "偏高：常见于肾功能下降、脱水…": the causes listed say nothing about this report
        s, low = s[:cause.start()], low[:cause.start()]
    al = _aliases()
    taken = _condition_spans(low)
    names = [(m.start(), m.end(), m.group(0)) for m in al.regex.finditer(low)
             if not _unit_like(low, m) and not any(a <= m.start() < b for a, b in taken)]
    if al.short_re:  # "钾偏高": a short name right before a direction
        names = sorted(names + [(m.start(), m.end(), m.group(0)) for m in al.short_re.finditer(low)
                                if not any(a <= m.start() < b for a, b, _ in names)
                                and not any(a <= m.start() < b for a, b in taken)])
    head = al.short_head.match(low) if al.short_head else None
    if head and not any(a <= head.start("n") < b for a, b, _ in names):  # "**钾（K）**：3.2 mmol/L，…，偏低 ↓"
        names = sorted(names + [(head.start("n"), head.end("n"), head.group("n"))])
    subjects = [(m.start(), m.end()) for m in al.subject_re.finditer(low)
                if not any(a <= m.start() < b for a, b, _ in names)] if al.subject_re else []
    # "血压 165/102 mmHg，心率 88 次/分属于偏高": a subject the table grades (心率) is a test name here; one that is
    # not (体温, 年龄) still takes the direction away from the test named before it, unjudged
    names = sorted(names + [(a, b, low[a:b]) for a, b in subjects if low[a:b] in al.graded_subjects])
    subjects = [(a, b) for a, b in subjects if low[a:b] not in al.graded_subjects]
    claims: list[Claim] = (_condition_claims(s, low, sentence) + _whole_report_claims(s, low, sentence, names)
                           + _count_claims(s, low, sentence))
    if not names:
        return claims
    claims += _pointer_claims(s, low, sentence, names) + _direction_label_claims(low, sentence, names)
    counted = _counted_prefix(low)
    brackets = [(m.start(), m.end()) for m in _BRACKET.finditer(low)]
    pending: list[tuple[int, int, str]] = []
    unclaimed: list[tuple[int, int, str]] = []  # names since the last direction was given to some
    listed: list[tuple] = []  # names and subjects since then (a list of values a verdict may close)
    said = None  # (names, end) of the last direction given
    aside = None  # (names, end of the bracket) after a direction in brackets: "血红蛋白（正常高值118 g/L）偏低" says both
    pos = 0
    events = sorted([(st, "name", (st, en, a)) for st, en, a in names] + [(st, "subject", (st, en)) for st, en in subjects]
                    + [(m.start(), "dir", m) for m in _DIR_RE.finditer(low)], key=lambda e: e[0])
    for start, kind, obj in events:
        if start < pos:
            continue
        if aside is not None:
            if kind == "dir" and not pending and counted[start] - counted[aside[1]] <= 2:
                pending = aside[0]  # the direction right after the bracket is said of the same names
            aside = None
        if kind == "subject":  # "心率 88 次/分属于正常高值": what follows is said of 心率 (unless listed: "血压和心率都正常")
            if pending and not _joined(low[pending[-1][1]:start]):
                pending = []
            listed.append(obj)
            pos = obj[1]
            continue
        if kind == "name":
            st, en, a = obj
            if pending and low[max(0, st - 1):st] == "在" and _LOCATIVE_END.match(low, en):
                pos = en  # "谷丙转氨酶和谷草转氨酶在肝功能中处于较低水平": 肝功能 is where, the subject stays
                continue
            unclaimed.append(obj)
            listed.append(obj)
            said = None
            if pending and not _joined(low[pending[-1][1]:st]):
                pending = []  # "血常规检查提示血红蛋白高": only names joined by 和/、/及 share a direction
            pending.append(obj)
            pos = en
            short = _SHORT_DIR.match(low[en:])
            if short:  # "血红蛋白高", "血糖有点低": single-character direction right after the name
                d = "high" if short.group("d") == "高" else "low"
                if short.group("neg"):
                    d = _NEGATED[d]
                claims += _claims_for(pending, d, low, en, sentence)
                unclaimed, listed = [], []
                pending, pos = [], en + short.end()
            continue
        m = obj
        d = m.lastgroup
        label = _LABEL_LIST.match(low, m.start())
        if label and pending and re.fullmatch(r"[\s*_]*的?", _BRACKET.sub("", low[pending[-1][1]:m.start()])):
            label = None  # "AFP（…）的异常值为3.2 ng/mL": the test's own value, called abnormal
        if label:  # "异常项目有…": a label over what follows (_pointer_claims), not a direction of what precedes
            pending, pos = [], label.end()
            continue
        if d == "normal" and _RANGE_LABEL.match(low, m.end()):
            pos = m.end()  # "正常值 3.5–9.5": a range, not a statement
            continue
        neg = _NEG.search(low[max(0, m.start() - 5):m.start()]) or _negated_verb(
            low, max(0, pending[0][0] - 3) if pending else max(0, m.start() - 12), m.start())
        if neg:
            d = _NEGATED[d]
        if not pending and said is not None and d in ("normal", "abnormal") and _AGAIN.match(_VALUE.sub("", low[said[1]:m.start()])):
            # "偏低 ↓，正常", "偏高值为 45 U/L，符合参考范围": a second direction right after the first (and its value) is
            # said of the same tests
            claims += _claims_for(said[0], d, low, m.start(), sentence)
            said, pos = (said[0], m.end()), m.end()
            continue
        if d in ("normal", "abnormal") and len(listed) >= 2 and len(unclaimed) > len(pending) \
                and counted[m.start()] - counted[listed[-1][1]] <= _CLAUSE_GAP and _list_verdict(low, listed, m.start()):
            # "血压130/85，空腹血糖6.5，总胆固醇5.0，符合正常范围", "血压 165/102 mmHg，心率 88 次/分，正常高值": a verdict in a
            # clause of its own after a list of values is said of every test in the list
            claims += _claims_for(unclaimed, d, low, m.start(), sentence)
            said, unclaimed, listed, pending, pos = (unclaimed, m.end()), [], [], [], m.end()
            continue
        if pending and counted[m.start()] - counted[pending[-1][1]] <= _CLAUSE_GAP:
            every = bool(_ALL.search(low[max(0, m.start() - 3):m.start()]))
            if len(unclaimed) > len(pending) and every:
                # "空腹血糖6.5，总胆固醇5.0，都正常": 都 gathers every test named since the last claim (a panel named
                # before as context, "根据尿常规信息，尿蛋白与隐血均异常", is not said to be abnormal in every member)
                claims += _claims_for([n for n in unclaimed if n not in pending], d, low, m.start(), sentence)
            claims += _claims_for(pending, d, low, m.start(), sentence, every=every and d in ("high", "low"))
            unclaimed, listed = [], []
            aside = next(((pending, b) for a, b in brackets if a < m.start() < b), None)
            said = (pending, m.end())
            pending = []
        elif low[m.end():m.end() + 1] == "的":  # "偏高的白细胞"
            nxt = next((n for n in names if n[0] == m.end() + 1), None)
            if nxt:
                claims += _claims_for([nxt], d, low, m.start(), sentence)
                pos = nxt[1]
                continue
        pos = m.end()
    return claims


def _blank_no_claim_clauses(s: str, low: str) -> tuple[str, str]:
    """Blank each clause that states nothing about this patient (`_NO_CLAIM_CLAUSE`): the bracket it is in, else
    from the clause mark before it to the next one. Positions stay as they were."""
    spans = []
    for m in _NO_CLAIM_CLAUSE.finditer(low):
        inside = next(((a + 1, b - 1) for a, b in ((x.start(), x.end()) for x in _BRACKET.finditer(low))
                       if a < m.start() < b), None)
        if inside is None:
            a = max(low.rfind(c, 0, m.start()) for c in _CLAUSE_MARK) + 1
            ends = [i for i in (low.find(c, m.end()) for c in _CLAUSE_MARK) if i >= 0]
            inside = (a, min(ends) if ends else len(low))
        spans.append(inside)
    if not spans or len(s) != len(low):
        return (s, low) if not spans else ("", "")
    for a, b in spans:
        s, low = s[:a] + " " * (b - a) + s[b:], low[:a] + " " * (b - a) + low[b:]
    return s, low


def _negated_verb(low: str, start: int, end: int) -> bool:
    """"不在正常范围内", "不符合肾功能检查的正常范围": a negated verb in the same clause as the direction
    ("没有达到贫血标准，属于正常" is not negated: a comma stands between)."""
    last = None
    for last in _NEG_VERB.finditer(low, start, end):
        pass
    return last is not None and not re.search(r"[，,；;：:]", low[last.end():end])


_LOCATIVE_END = re.compile(r"(?:的)?(?:中|里|当中|之中|方面|内)")
_LIST_GAP = re.compile(r"^[\s,，、;；:：=*_]*(?:是|为)?[\s:：]*$")
_VERDICT_OPENS = re.compile(r"[，,；;][\s*_]*(?:都|均|全|全部|全都|基本|基本上|也)?(?:是|在|属于|处于|符合|位于)?(?:医学上?的?)?$")


def _list_verdict(low: str, names: list, at: int) -> bool:
    """"血压130/85，空腹血糖6.5，总胆固醇5.0，符合正常范围": a list of tests (or subjects: 心率) with only their values
    between them, then a clause that is nothing but a normal / abnormal verdict: the verdict is said of the list."""
    gaps = [low[a[1]:b[0]] for a, b in zip(names, names[1:])]
    return (all(_LIST_GAP.match(_VALUE.sub("", g)) for g in gaps)
            and bool(_VERDICT_OPENS.search(_VALUE.sub("", low[names[-1][1]:at]))))


def _joined(between: str) -> bool:
    """Names that share one direction: only 和/、/及 … between them, brackets aside ("中性粒细胞（85%）和血红蛋白")."""
    return bool(_JOIN.match(_BRACKET.sub("", between)))


def _counted_prefix(low: str) -> list[int]:
    """counted[i] = characters before i that count towards a clause's length (values and brackets do not)."""
    skip = bytearray(len(low) + 1)
    for m in _VALUE.finditer(low):
        skip[m.start():m.end()] = b"\x01" * (m.end() - m.start())
    out, n = [0], 0
    for i in range(len(low)):
        n += not skip[i]
        out.append(n)
    return out


# "这些数值都符合正常范围", "检查结果均正常", "这个情况是正常的": the whole report called normal (no test named)
_WHOLE_REPORT_NORMAL = re.compile(
    r"(?<![其余它他除])(?:这些|以上|上述|所有|各项|全部|整体|总体|这个|您的|你的)?(?:数值|数据|指标|结果|项目|检查|化验|检验|报告|情况"
    r"|(?:健康|身体)状况|身体状态|病例)"  # "因此，你的健康状况是正常的", "这个病例看起来非常健康，没有明显的异常"
    r"[^，,。；;、]{0,6}?(?:都|均|全部|全都|基本)?(?:是|在|属于|符合|处于)?"
    r"(?:正常范围|正常值范围|正常的|正常(?![运工生饮作现人情])|没有(?:明显)?(?:的)?异常|无(?:明显)?(?:的)?异常|未见(?:明显)?(?:的)?异常"
    r"|(?:非常|很|比较|十分)?健康(?:的)?(?=[，,。；;！!]|$))")
# "这些数据符合标准", "这些数据符合你的铁代谢标准": normal, for the whole report or the panel named before 标准
_WHOLE_REPORT_STANDARD = re.compile(
    r"(?<![其余它他除])(?:这些|以上|上述|所有|各项|全部|整体|总体|您的|你的)?(?:数值|数据|指标|结果|项目)[^，,。；;、]{0,4}?"
    r"(?:都|均|全部|全都|基本)?符合(?:你|您)?的?(?P<inner>[^，,。；;、的]{0,8}?)的?(?:正常|参考)?(?:标准|范围|要求)")
# "各项指标都处于偏低范围内", "Lipid panel中的各项指标都偏高": high / low said of every value (of the whole report, or of
# the panel named just before); an "all" word is needed ("各项", "所有", "都" …)
_WHOLE_REPORT_DIR = re.compile(
    r"(?<![其余它他除])(?P<q>这些|以上|上述|所有|各项|全部|每项|每一项)?(?:的)?(?:数值|数据|指标|结果|项目)[^，,。；;、]{0,4}?"
    r"(?P<all>都|均|全部|全都)?(?:是|在|属于|处于|呈)?(?P<d>偏高|偏低|升高|降低|过高|过低|(?:高于|低于)正常)")
_WHOLE_REPORT_SKIP = re.compile(r"其余|其他|其它|除了?|之外|以外|部分|有些|大部分|大多")


def _whole_report_claims(s: str, low: str, sentence: str, names: list) -> list[Claim]:
    if _WHOLE_REPORT_SKIP.search(low):
        return []
    al = _aliases()

    def about_a_test(m: re.Match) -> bool:  # "血脂指标正常", "空腹血糖（5.2 mmol/L）：结果：正常": about the test named
        return any(m.start() <= a < m.end() or b in (m.start(), m.start() - 1)
                   or (b < m.start() and re.fullmatch(r"[\s*_:：]*", _VALUE.sub("", low[b:m.start()]))) for a, b, _ in names)

    out = []
    m = _WHOLE_REPORT_DIR.search(low)
    if m and (m.group("all") or m.group("q") not in (None, "这些", "以上", "上述")):
        d = "low" if m.group("d") in ("偏低", "降低", "过低", "低于正常") else "high"
        head = next((n for n in names if re.fullmatch(r"(?:中的|里的|的|中)?", low[n[1]:m.start()])), None)
        if head:  # "Lipid panel中的各项指标都处于偏低范围内": every member of that panel
            keys, kind = al.resolve[head[2]]
            out.append(Claim(alias=head[2], keys=keys, kind="panel" if kind == "panel" else kind, direction=d,
                             sentence=sentence.strip(), every=kind == "panel", spans=(head[:2], m.span())))
        else:
            out.append(Claim(alias=m.group(0), keys=("*",), kind="report", direction=d, sentence=sentence.strip(),
                             condition=True, every=True, spans=(m.span(),)))
    m = _WHOLE_REPORT_NORMAL.search(low)
    if m and m.group(0).startswith("这个") and names:
        m = None  # "这个结果是正常的，说明你的白细胞数量在正常范围内" (or the test named before, put in front by the reader)
    if m and not about_a_test(m):
        return out + [Claim(alias=s[m.start():m.end()] if len(s) == len(low) else m.group(0), keys=("*",), kind="report",
                            direction="normal", sentence=sentence.strip(), condition=True, spans=(m.span(),))]
    m = _WHOLE_REPORT_STANDARD.search(low)
    if not m or any(b in (m.start(), m.start() - 1) for a, b, _ in names):
        return out
    inner = _norm_alias(m.group("inner"))
    if not inner:
        return out + [Claim(alias=m.group(0), keys=("*",), kind="report", direction="normal",
                            sentence=sentence.strip(), condition=True, spans=(m.span(),))]
    if inner in al.resolve:  # "符合你的铁代谢标准": the panel is called normal
        keys, kind = al.resolve[inner]
        said = s[m.start("inner"):m.end("inner")] if len(s) == len(low) else m.group("inner")
        return out + [Claim(alias=said, keys=keys, kind=kind, direction="normal", sentence=sentence.strip(),
                            overall=al.overall.get(inner, ""), spans=(m.span(),))]
    return out  # "符合高血压的诊断标准": a condition, judged by its own name


# "以下是三个异常项目", "出现了5项异常", "两项指标偏高": a count of results in a direction
_COUNT = re.compile(r"(?:^|(?<=[\s，,。：:；;（(有了是共中现示下这括为出]))(?P<n>\d{1,2}|[一二两三四五六七八九十]{1,3})\s*(?:个|项|处)(?:检查|检验|化验)?(?:指标|项目|数值|结果|数据)?"
                    r"(?:存在|出现了?|有|都|均|是|为)?(?:的)?\s*(?P<d>异常|不正常|超出(?:正常|参考)?(?:范围|区间)|超标|偏高|升高|偏低|降低)")
_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _zh_number(t: str) -> int:
    if t.isdigit():
        return int(t)
    if "十" in t:
        a, _, b = t.partition("十")
        return _ZH_DIGITS.get(a, 1) * 10 + _ZH_DIGITS.get(b, 0)
    return _ZH_DIGITS.get(t, 0)


def _count_claims(s: str, low: str, sentence: str) -> list[Claim]:
    out = []
    for m in _COUNT.finditer(low):
        n, d = _zh_number(m.group("n")), m.group("d")
        d = "high" if d in ("偏高", "升高") else "low" if d in ("偏低", "降低") else "abnormal"
        if n:
            out.append(Claim(alias=s[m.start():m.end()] if len(s) == len(low) else m.group(0), keys=("*",), kind="report",
                             direction=d, sentence=sentence.strip(), condition=True, count=n, spans=(m.span(),)))
    return out


# "血压130/85，空腹血糖6.5，总胆固醇5.0，这些都是正常的": a clause that points back at the tests named before it
# ("这些", "以上", "这") and calls them normal / abnormal says so of each of them (high / low words after a
# demonstrative are usually consequences: "这些都会增加风险", not read)
_CONCLUDE = r"(?:所以|因此|因而|总之|总的来说|综上所述|综上|总体(?:来说|来看|而言|上)|整体(?:来说|来看|而言|上))"
_DEMONSTRATIVE = re.compile(r"(?:^|[，,；;。:：])\s*(?:" + _CONCLUDE + r"?[，,\s]*"
                            r"(?:这些|以上|上述|它们|这几项|这几个|该项|该指标|该数值|该值|此项|这)(?:数值|指标|结果|数据|项目|值|检查)?"
                            # "…总胆固醇5.0。因此，没有问题。": a conclusion that is only a verdict points back too
                            r"|" + _CONCLUDE + r"[，,\s]*(?=(?:都|均|一切|全部|基本上?)?(?:是)?(?:正常(?:的)?|没有(?:明显|什么)?"
                            r"(?:问题|异常)|没问题|无异常|未见异常)\s*(?:[。！!；;，,]|$)))")
_DEMONSTRATIVE_DIR = re.compile(r"^(?:都|均|全部|全都|一切|基本|基本上|也|完全|还)?(?:不)?(?:是|在|属于|符合|处于|算)?"
                                r"(?:医学(?:上)?|参考|标准)?(?:的)?(?P<d>正常(?:范围|值|水平)?(?:内|的)?(?=$|[了的，,。；;！!])"
                                r"|异常|没有(?:明显|什么)?问题|没问题)")
# "正常项目包括尿蛋白、隐血…", "异常项目：甲功（TSH）": each test listed after the label is called normal / abnormal
_LABEL_LIST = re.compile(r"(?P<d>正常|异常)(?:的)?(?:项目|指标|结果|值|的有)(?:主要)?(?:包括|有|是|为|：|:)")


def _states_a_direction(text: str) -> bool:
    """A direction word outside a conditional / preventive clause ("正常高值：正常高值正常水平…" with no test named):
    not general advice, whatever it is about."""
    low = unicodedata.normalize("NFKC", text).lower()
    if _NO_CLAIM.search(low.strip()):
        return False
    return bool(_DIR_RE.search(_blank_no_claim_clauses(low, low)[1]))


# a sentence that opens by pointing back ("这表明你的体重超重", "这说明…", "以上…") is about what was said before it:
# after a held contradiction its antecedent is gone, so it is never general advice
_ANTECEDENT = re.compile(r"^[\s*_#>-]*(?:\d+\s*[.、]\s*)?(?:这|那|此|该|其|它|以上|上述|前者|后者)")


def _points_back(text: str) -> bool:
    """"这些都是正常的" with no test named: a claim on whatever was named before it (never general advice)."""
    low = unicodedata.normalize("NFKC", text).lower()
    m = _DEMONSTRATIVE.match(low)
    return bool(m and _DEMONSTRATIVE_DIR.match(low[m.end():]))


def _pointer_claims(s: str, low: str, sentence: str, names: list) -> list[Claim]:
    """Claims of a demonstrative clause on the tests named before it, and of labelled lists on the tests after."""
    out: list[Claim] = []
    for m in _DEMONSTRATIVE.finditer(low):
        before = [n for n in names if n[1] <= m.start()]
        clause_end = next((i for i in range(m.end(), len(low)) if low[i] in "，,；;。"), len(low))
        if not before or any(m.end() <= n[0] < clause_end for n in names):
            continue
        dm = _DEMONSTRATIVE_DIR.match(low[m.end():clause_end])
        if not dm:
            continue
        d = "normal" if dm.group("d") != "异常" else "abnormal"
        neg = _NEG.search(low[max(0, m.end() + dm.start("d") - 5):m.end() + dm.start("d")]) or \
            _NEG_VERB.search(low[m.end():m.end() + dm.start("d")])
        out += _claims_for(before, _NEGATED[d] if neg else d, low, m.end() + dm.start("d"), sentence)
    labels = list(_LABEL_LIST.finditer(low))
    for i, m in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(low)
        after = [n for n in names if m.end() <= n[0] < end]
        if after and not _NEG.search(low[max(0, m.start() - 4):m.start()]):
            out += _claims_for(after, "normal" if m.group("d") == "正常" else "abnormal", low, m.start(), sentence)
    return out


# "高血压患者", "超重或肥胖的人": about people with the condition (and another named with it), not this report
# "正常高值：CK 520 U/L，CK-MB 45 U/L…", "- **偏高**：肌酐、尿酸": a direction that opens the sentence as a label ("正常范围：",
# a range, is none)
_DIRECTION_LABEL = re.compile(r"^[\s>#*_\-•·+]*(?:(?:\d+|[一二三四五六七八九十]+)\s*[.、)）]\s*)?[*_\s]*"
                              r"(?P<w>正常高值|正常低值|正常|偏高|偏低|升高|降低|增高|减低|过高|过低|异常|阳性|阴性|↑|↓)[*_\s]*[:：]")


_COMPARES = re.compile(r"超过|大于|小于|不到|[<>≤≥]")  # "空腹血糖超过 3.9 mmol/L": the clause compares for itself


def _direction_label_claims(low: str, sentence: str, names: list) -> list[Claim]:
    """A direction label opening the sentence is said of each test after it whose clause gives it no direction or
    comparison of its own ("正常高值：空腹血糖超过 3.9 mmol/L" defines a category: not read)."""
    m = _DIRECTION_LABEL.match(low)
    if not m:
        return []
    d = "normal" if m.group("w").startswith("正常") else _DIR_RE.fullmatch(m.group("w")).lastgroup
    out = []
    for st, en, a in names:
        if st < m.end():
            continue
        cut, end = _clause_around(low, st, en)
        clause = low[max(cut, m.end()):end]
        for _a, _b, other in names:  # names are no direction words ("高密度脂蛋白"): blank them
            clause = clause.replace(other, " ")
        if not _DIR_RE.search(clause) and not _COMPARES.search(clause) and not _SHORT_DIR.match(low[en:]):
            out += _claims_for([(st, en, a)], d, low, m.start("w"), sentence)
    return out


_GENERAL = re.compile(r"^(?:(?:或|和|及|与|、|或者)[\u4e00-\u9fff]{1,4}?)?(?:的)?(?:患者|病人|人群|的人|者|病友|人士)"
                      # "甲功三项是甲亢症的三个重要指标", "…与甲亢症的诊断和治疗": the condition in general
                      r"|^症?的(?:[\u4e00-\u9fff]{0,4}?)(?:指标|诊断和治疗|诊治|治疗|筛查|危险因素|症状|表现|预防)")
_COND_NEG = re.compile(r"(?:不|没有?|未|无|并非|并不|不算|排除|不是|不属于|不考虑)(?:达到|到|患有|是|属于|考虑|诊断为?|发现|存在|提示)?$")


def _condition_spans(low: str) -> list[tuple[int, int]]:
    rx = _aliases().condition_re
    return [(m.start(), m.end()) for m in rx.finditer(low)] if rx else []


def _condition_claims(s: str, low: str, sentence: str) -> list[Claim]:
    """"诊断为高血脂", "提示贫血": a condition name states the direction of its tests; "没有达到高血压" the opposite."""
    al = _aliases()
    out = []
    for a, b in _condition_spans(low):
        keys, kind, d = al.conditions[low[a:b]]
        if _GENERAL.match(low[b:]):
            continue  # "高血压患者应…": about people with the condition, not this report
        if _COND_NEG.search(low[max(0, a - 6):a]):
            d = _NEGATED[d]
        out.append(Claim(alias=s[a:b] if len(s) == len(low) else low[a:b], keys=keys, kind=kind, direction=d,
                         sentence=sentence.strip(), condition=True, overall=al.overall.get(low[a:b], ""),
                         spans=((max(0, a - 6), b),)))
    return out


_FUNCTION_LOW = {"low": "abnormal", "not_low": "normal"}


def _claims_for(names, direction, low, at, sentence, every: bool = False) -> list[Claim]:
    al = _aliases()
    out = []
    for st, en, a in names:
        keys, kind = al.resolve[a]
        d = direction
        if a.endswith("功能"):  # "肾功能下降" says the function is impaired (its markers abnormal), not that they are low
            d = _FUNCTION_LOW.get(d, d)
        said = sentence[st:en]
        out.append(Claim(alias=said if unicodedata.normalize("NFKC", said).lower() == a else a, keys=keys, kind=kind,
                         direction=d, sentence=sentence.strip(), overall=al.overall.get(a, ""),
                         every=every and kind == "panel", spans=((st, en), (at, at + 1))))
    return out


def check_claim(claim: Claim, by_key: dict[str, Finding]) -> Violation | None:
    if claim.kind == "report":
        found = list(by_key.values())
    elif claim.overall in by_key:  # "血压150/80 正常": judged by the graded blood pressure, not by the diastolic alone
        found = [by_key[claim.overall]]
    else:
        found = [by_key[k] for k in claim.keys if k in by_key]
    if not found:
        return Violation(claim, "unreported")
    graded = [f for f in found if f.status != "ungraded"]
    if not graded:
        return None
    if claim.count:  # "以下是三个异常项目" with two abnormal results (ungraded ones might be so too)
        so = [f for f in graded if f.status == claim.direction or (claim.direction == "abnormal" and is_abnormal(f))]
        if claim.count <= len(so) + len(found) - len(graded):
            return None
        return Violation(claim, "contradiction", [f for f in graded if f not in so])
    ok = [claim.direction in CONSISTENT[f.status] for f in graded]
    if claim.kind in ("panel", "report"):
        if claim.direction in ("normal", "not_high", "not_low") or claim.every:
            bad = not all(ok)
        else:
            bad = not any(ok)
    else:
        bad = not any(ok)
    return Violation(claim, "contradiction", [f for f, good in zip(graded, ok) if not good]) if bad else None


def _clause_around(low: str, start: int, end: int) -> tuple[int, int]:
    """The clause (between ，；。 marks) that holds low[start:end]."""
    ends = [i for i in (low.find(c, end) for c in "，,；;。") if i >= 0]
    return max(low.rfind(c, 0, start) for c in "，,；;。") + 1, min(ends) if ends else len(low)


# "甲功（TSH）的正常范围是 0.02 mIU/L": a normal range stated as the patient's own value calls that value normal
_RANGE_IS = re.compile(r"(?:正常|参考)(?:范围|值|水平|区间)(?:是|为|在)[\s:：]*")
_SINGLE_NUMBER = re.compile(r"(?<![\d.<>≤≥~～\-–])\d+(?:\.\d+)?(?![\d.])(?!\s*[-–~～]\s*\d)")


def _own_value_as_range_claims(sentence: str, findings: list[Finding]) -> list[Claim]:
    low = unicodedata.normalize("NFKC", sentence).lower()
    al = _aliases()
    out = []
    for m in _RANGE_IS.finditer(low):
        start, end = _clause_around(low, m.start(), m.end())
        numbers = {float(x.group(0)) for x in _SINGLE_NUMBER.finditer(low, m.end(), end)}
        for n in al.regex.finditer(low, start, m.start()):
            keys = al.resolve[n.group(0)][0]
            for f in findings:
                said = sentence[n.start():n.end()] if len(sentence) == len(low) else n.group(0)
                if f.key in keys and isinstance(f.value, (int, float)) and float(f.value) in numbers \
                        and not any(c.keys == (f.key,) for c in out):
                    out.append(Claim(alias=said, keys=(f.key,), kind="single", direction="normal", sentence=sentence.strip(),
                                     spans=(n.span(), m.span())))
    return out


# "丙氨酸氨基转移酶在 9-50 U/L 的范围内" with ALT 86: a value said to lie in a range it is outside of is called normal
# (a true "在 60-100 的范围内" says nothing of its grade; "不在…范围内" is a negation, read elsewhere)
_IN_RANGE = re.compile(r"(?<!不)(?:在|处于|位于)\s*(?P<a>\d+(?:\.\d+)?)\s*(?:[-–~～至到])\s*(?P<b>\d+(?:\.\d+)?)\s*"
                       r"(?:[a-zμµ%/^·\d.]+|次/分)?\s*(?:的)?(?:正常|参考)?(?:值)?(?:范围|区间)(?:内|之内|以内)")


def _stated_range_claims(sentence: str, findings: list[Finding]) -> list[Claim]:
    low = unicodedata.normalize("NFKC", sentence).lower()
    al = _aliases()
    out = []
    for m in _IN_RANGE.finditer(low):
        start = _clause_around(low, m.start(), m.end())[0]
        named = [n for n in al.regex.finditer(low, start, m.start()) if not _unit_like(low, n)]
        if not named:
            continue
        n = named[-1]  # the nearest test before it in the clause
        a, b = sorted((float(m.group("a")), float(m.group("b"))))
        for f in findings:
            if f.key in al.resolve[n.group(0)][0] and isinstance(f.value, (int, float)) and not a <= float(f.value) <= b:
                said = sentence[n.start():n.end()] if len(sentence) == len(low) else n.group(0)
                out.append(Claim(alias=said, keys=(f.key,), kind="single", direction="normal", sentence=sentence.strip(),
                                 spans=(n.span(), m.span())))
    return out


def check_sentence(sentence: str, findings: list[Finding], *, block_unreported: bool = False) -> list[Violation]:
    """Violations in one sentence: contradictions, plus claims about unreported tests if `block_unreported`."""
    by_key = {f.key: f for f in findings}
    out = []
    for c in extract_claims(sentence) + _own_value_as_range_claims(sentence, findings) + _stated_range_claims(sentence, findings):
        v = check_claim(c, by_key)
        if v and (v.kind == "contradiction" or block_unreported):
            out.append(v)
    return out


# ---- precision first: a sentence about the results is shown only when it is verified ----------------------------
# besides the direction words: reassurance, "健康" said of a person or a result, "在…范围内", 理想/良好/临界 …
_REASSURE = re.compile(r"(?:没有?|无)(?:什么|太大的?|大的?|明显的?)?(?:问题|大碍)|没问题|(?:不用|无需|不必|不需要|别)(?:太)?担心|放心")
_HEALTHY = re.compile(r"健康(?!的?(?:生活|饮食|习惯|方式|作息|体重|管理|教育|体检|检查|知识|人群|成年|食物|饮品|(?:重要)?指标|状况的))")
# how serious the results are ("这个报告确实严重", "属于中等危急状态"): nothing in the table verifies it (not read in a
# conditional: "如有严重不适，请及时就医" is advice)
_SEVERE = re.compile(r"严重|危急|危重|危险")
_WITHIN = re.compile(r"范围(?:内|之内|以内)|区间内|理想|良好|不错|欠佳|不佳|达标|临界|边缘|偏快|偏慢|过快|过慢")
# what may stand between a test's name and its value when the answer restates it ("谷丙转氨酶（ALT）：25 U/L")
_RESTATE_LEAD = re.compile(r"[）)]?(?:\s*[（(][^（）()]{0,24}[）)])?[\s*_]*(?:的)?(?:数值|检测值|测定值|值|水平|结果|浓度|含量|计数|分级)?"
                           r"[\s*_]*(?:[:：=]|为|是|约|达到?|有)?[\s*_:：=\[【]*")
_CONVERTED = re.compile(r"换算为\s*(\d+(?:\.\d+)?)")


@dataclass
class Verified:
    """What one sentence says about the results, and what of it the checker could not verify."""

    about: bool                                 # it names a test or evaluates a result (not general advice)
    missing: list = field(default_factory=list)  # the words no agreeing claim or restated value covers

    @property
    def ok(self) -> bool:
        return not self.missing


def _agrees(claim: Claim, by_key: dict[str, Finding]) -> bool:
    """The claim holds for the graded findings it is about (an ungraded or unreported test cannot be verified)."""
    if check_claim(claim, by_key) is not None:
        return False
    if claim.kind == "report":
        found = list(by_key.values())
    elif claim.overall in by_key:
        found = [by_key[claim.overall]]
    else:
        found = [by_key[k] for k in claim.keys if k in by_key]
    return any(f.status != "ungraded" for f in found)


def _restates_value(low: str, end: int, keys: tuple, findings: list[Finding]) -> bool:
    """"谷丙转氨酶（ALT）：25 U/L": the name followed by the patient's own value (or its converted value)."""
    rest = low[_RESTATE_LEAD.match(low, end).end():]
    num = re.match(r"[<>≤≥]?\s*(\d+(?:\.\d+)?)", rest)
    for f in findings:
        if f.key not in keys:
            continue
        if isinstance(f.value, (int, float)):
            values = [float(f.value)] + [float(x) for x in _CONVERTED.findall(f.note)]
            if num and any(abs(float(num.group(1)) - v) < 1e-9 for v in values):
                return True
        elif str(f.value).strip() and rest.startswith(_norm_alias(f.value)):
            return True
    return False


_RANGE_AFTER = re.compile(r"(?P<a>\d+(?:\.\d+)?)\s*(?:[-–~～至到])\s*(?P<b>\d+(?:\.\d+)?)|(?P<lt>[<＜≤]|小于|低于)\s*(?P<c>\d+(?:\.\d+)?)")


def _states_its_range(low: str, end: int, keys: tuple, findings: list[Finding]) -> bool:
    """"肌酐的正常值范围是41-73 umol/L", "正常值是3.5-9.5": the first range after the name, in its sentence, is the
    range the table graded the value by (the printed one or the curated one)."""
    m = _RANGE_AFTER.search(low, end, min(len(low), end + 40))
    if not m or re.search(r"[。；;\n]", low[end:m.start()]) or _aliases().regex.search(low, end, m.start()):
        return False
    a, b = (float(m.group("a")), float(m.group("b"))) if m.group("a") else (None, float(m.group("c")))
    return any(f.key in keys and f.ref_high is not None and abs(f.ref_high - b) < 1e-9
               and (a is None and not f.ref_low or a is not None and f.ref_low is not None and abs(f.ref_low - a) < 1e-9)
               for f in findings)


def verify_sentence(text: str, findings: list[Finding], *, start: int = 0, covered: tuple = ()) -> Verified:
    """Precision first: every test the sentence names (a single test: panels only set the context) and every word
    that evaluates a result (偏高/正常/异常 …, a condition, a count, 健康, 范围内, 没问题/不用担心) must be covered by a
    claim that agrees with the table or, for a name, by the patient's own value restated ("ALT：25 U/L"); a line
    that only names a test (a heading) states nothing. Conditional sentences, unreported or ungraded tests, a name
    with nothing said of it ("谷丙转氨酶是肝脏的重要指标") cannot be verified. Clauses that state nothing about this
    patient (prevention, whether, a range given as a range, causes after 见于) are not read, as in `extract_claims`.
    `start`: the words before it were put there by the reader (a heading's test, the tests pointed at) and only
    the words from `start` on need covering; `covered`: spans the caller verified (a pointer's direction)."""
    s = unicodedata.normalize("NFKC", text)
    low = s.lower()
    if not low.strip():
        return Verified(False)
    al = _aliases()
    _s, blank = _blank_no_claim_clauses(s, low)
    if len(blank) != len(low):  # a sentence NFKC changed the length of: nothing can be placed, nothing verified
        return Verified(bool(al.regex.search(low) or _DIR_RE.search(low)), ["unplaced"])
    cause = _CAUSES.search(blank)
    if cause:
        blank = blank[:cause.start()] + " " * (len(blank) - cause.start())
    all_taken = _condition_spans(blank)
    taken = [(a, b) for a, b in all_taken if not _GENERAL.match(blank[b:])]
    names = [(m.start(), m.end(), m.group(0)) for m in al.regex.finditer(blank)
             if m.start() >= start and not _unit_like(blank, m) and not any(a <= m.start() < b for a, b in all_taken)]
    if al.short_re:
        names += [(m.start(), m.end(), m.group(0)) for m in al.short_re.finditer(blank)
                  if m.start() >= start and not any(a <= m.start() < b for a, b, _ in names)]
    head = al.short_head.match(blank) if al.short_head else None
    if head and head.start("n") >= start and not any(a <= head.start("n") < b for a, b, _ in names):
        names.append((head.start("n"), head.end("n"), head.group("n")))
    if al.subject_re:  # 心率, 腰围: subjects the table grades are tests here
        names += [(m.start(), m.end(), m.group(0)) for m in al.subject_re.finditer(blank) if m.group(0) in al.graded_subjects
                  and m.start() >= start and not any(a <= m.start() < b for a, b, _ in names)]
    inside = lambda i: any(a <= i < b for a, b, _ in names)  # noqa: E731
    words = [(m.start(), m.group(0)) for m in _DIR_RE.finditer(blank) if m.start() >= start and not inside(m.start())
             and not (m.lastgroup == "normal" and _RANGE_LABEL.match(blank, m.end()))]
    words += [(a, blank[a:b]) for a, b in taken if a >= start]
    words += [(m.start(), m.group(0)) for rx in (_REASSURE, _HEALTHY, _WITHIN, _COUNT) for m in rx.finditer(blank)
              if m.start() >= start and not inside(m.start())]
    severe = [(m.start(), m.group(0)) for m in _SEVERE.finditer(blank) if m.start() >= start and not inside(m.start())]
    singles = [n for n in names if al.resolve[n[2]][1] != "panel" and n[2] not in al.overall]  # 血压 is a group too
    if _NO_CLAIM.search(low.strip()):  # "如果白细胞升高…", a question: states nothing that can be verified
        return Verified(True, [w for _i, w in words] + [n[2] for n in singles]) if singles or words else Verified(False)
    words += severe
    if not singles and not words:
        return Verified(False)
    head = _HEADING.match(s)
    if head and not (head.group("value") or "").strip() and _norm_alias(_BRACKET.sub("", head.group("name"))) in al.resolve:
        singles = []  # "1. **总胆固醇**：": a heading states nothing of its own
    by_key = {f.key: f for f in findings}
    claims = extract_claims(text) + _own_value_as_range_claims(text, findings) + _stated_range_claims(text, findings)
    agreeing = [c for c in claims if _agrees(c, by_key)]
    cover = [sp for c in agreeing for sp in c.spans] + list(covered)
    graded = [f for f in findings if f.status != "ungraded"]
    if graded and all(f.status == "normal" for f in graded):  # "没问题", "不用担心": true only of an all-normal report
        cover += [m.span() for m in _REASSURE.finditer(blank)]
    for m in _IN_RANGE.finditer(blank):  # "心率 88 次/分，在 60-100 的范围内", true and graded normal
        lo_, hi_ = sorted((float(m.group("a")), float(m.group("b"))))
        before = [n for n in names if n[1] <= m.start() and not re.search(r"[，,；;。]", blank[n[1]:m.start()])]
        if before:
            fs = [by_key[k] for k in al.resolve[before[-1][2]][0] if k in by_key]
            if fs and all(f.status == "normal" and isinstance(f.value, (int, float)) and lo_ <= f.value <= hi_ for f in fs):
                cover += [before[-1][:2], m.span()]
    hit = lambda i: any(a <= i < b for a, b in cover)  # noqa: E731
    cover += [m.span() for m in _DIR_RE.finditer(blank) if hit(m.start())]  # the whole direction word ("理想范围内")
    every_name = [(m.start(), m.end()) for m in al.regex.finditer(low)]
    for m in _DIR_RE.finditer(blank):  # "偏高 ↑", "高于正常范围，所以可以判定为偏高": said again of the same test
        if hit(m.start()) or inside(m.start()) or m.start() < start:
            continue
        before = [c for c in agreeing if len(c.spans) == 2 and c.spans[1][0] < m.start()
                  and not any(c.spans[1][0] < a < m.start() for a, _b in every_name)]
        if not before:
            continue
        at = max(c.spans[1][0] for c in before)
        d = _NEGATED[m.lastgroup] if _NEG.search(blank[max(0, m.start() - 5):m.start()]) else m.lastgroup
        if all(_agrees(replace(c, direction=d), by_key) for c in before if c.spans[1][0] == at):
            cover.append(m.span())
    missing = [w for i, w in words if not hit(i)]
    missing += [a for st, en, a in singles if not hit(st) and not _restates_value(blank, en, al.resolve[a][0], findings)
                and not _states_its_range(low, en, al.resolve[a][0], findings)]
    return Verified(True, missing)


def check_text(text: str, findings: list[Finding], *, block_unreported: bool = False) -> list[Violation]:
    """Violations in a whole answer, read as the streaming check reads it (`AnswerReader`)."""
    sents, rest = split_sentences(text)
    reader = AnswerReader(findings, block_unreported=block_unreported)
    return [v for s in sents + [rest] for v in reader.check(s)]


# a line that only names a test ("1. **总胆固醇**：") heads the bullet items under it ("- **正常高值**：240 mg/dL")
# "### 1. 空腹血糖" (a line of its own, no colon) and "1. **空腹血糖：6.5 mmol/L**" (the value only) head them too
_HEADING = re.compile(r"^\s*(?:#+\s*)?(?:(?:\d+|[一二三四五六七八九十]+)\s*[.、)）]\s*)?(?:[-*•·+]\s+)?[*_]*"
                      r"(?P<name>[^*_:：，,。；;\n]{1,24}?)[*_]*\s*(?:[:：](?P<value>[^\n]*)|(?P<line>\n))\s*$")
# what a heading's value part may hold besides values: a reference label and punctuation ("85 umol/L，参考范围 57–97 umol/L。")
_HEAD_VALUE_REST = re.compile(r"[\s*_，,。；;]|(?:参考|正常)(?:范围|值|区间)?(?:为|是)?[:：]?")
_BULLET = re.compile(r"^\s*(?:[-•·+]|\*(?!\*))\s*")  # "- …", "* …" (not "**bold**")
_NUMBERED = re.compile(r"^\s*(?:\d+\s*[.、)）]|[（(]\d+[）)])")


# a line that is only a direction label over a value ("正常高值：85 umol/L"): said of the test with that value
_VALUE_LINE = re.compile(r"^\s*(?:[-•·+]\s*|\*(?!\*)\s*)?[*_]*(?P<d>[^*_:：，,。\d]{1,8})[*_]*\s*[:：]\s*[*_]*"
                         r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[a-zμµ%/^·\d.]*)[*_]*\s*[。；;]?\s*$")


# a sentence that is only a verdict ("正常高值。", "一切正常。", "异常。"): of the tests named just before, else of the report
_VERDICT_WORD = (r"正常(?:高值|范围内?|水平)?(?:的)?|没有(?:明显|什么)?(?:问题|异常)|没问题|无异常|未见异常|异常"
                 r"|(?:理想|合适|适合|适宜|合理|健康)(?:的)?(?:范围|区间|水平)")
# … or a few of them ("正常高值，适合水平。")
_BARE_VERDICT = re.compile(r"^[\s*_#>-]*(?:所以|因此|因而|总之|总的来说|综上所述?)?[，,\s]*(?:都|均|一切|全部|基本上?)?(?:是|属于)?"
                           r"(?P<d>" + _VERDICT_WORD + r")(?:[，,、\s]*(?:是|属于)?(?:" + _VERDICT_WORD + r"))*"
                           r"[*_\s]*[。！!]?\s*$")


# "所以这个数值偏高", "该值偏低": high / low said of one value pointed at (the last test named, in the sentence before)
_POINTER_DIR = re.compile(r"(?:这个|这一|该|此)(?:数值|值|指标|结果|水平|项目?)(?:也|都|明显|稍|略|有些|有点)?(?:是|为|属于|处于)?"
                          r"(?P<d>偏高|偏低|升高|降低|过高|过低|增高|减低|超标)")
# a line that labels the list below it ("**异常项目：**", "你有几个异常的项目：", "以下是三个异常项目及其解释：")
_LABEL_HEAD = re.compile(r"(?P<d>正常|异常)(?:的)?(?:项目|指标|结果)?(?:(?:及其|及|的)?(?:解释|说明|分析|解读|原因)"
                         r"(?:(?:和|及|与|、)(?:下一步|进一步)?(?:的)?(?:建议|处理|措施))?|如下|有|包括|是|为)?"
                         r"[*_\s]*[:：][*_\s]*$")
_ITEM_NAME = re.compile(r"^\s*(?:[-•·+]|\*(?!\*)|\d+\s*[.、)）])?\s*[*_]*(?P<n>[^*_:：，,。\s\d()（）]{1,12}?)(?:离子)?[*_]*\s*[:：(（]")
_LIST_NUMBER = re.compile(r"^\s*(?:\d+|[一二三四五六七八九十]+)\s*[.、]\s*$")  # "1." cut off as a sentence of its own
_INTRO = re.compile(r"[:：][\s*_#]*$")  # a line that ends announcing what follows (a list, an explanation)
_BARE_ITEM = re.compile(r"^\s*(?:\d+|[一二三四五六七八九十]+)\s*[.、][\s*_#]*$")  # … or with its opening markup ("2. **")


class AnswerReader:
    """Checks an answer sentence by sentence as `ming.respond.split_sentences` cuts it; the streaming check
    (`ReportPostCheck`) and the whole-answer check (`check_text`) both read with it, so they judge alike. A
    heading line that only names a test ("1. **总胆固醇**：") is the subject of the bullet items under it that
    name no test ("- **正常高值**：240 mg/dL" says 总胆固醇 is 正常高值) until a numbered item or a plain line."""

    def __init__(self, findings: list[Finding], *, block_unreported: bool = False):
        self.findings, self.block_unreported = findings, block_unreported
        self.subject = ""
        self.previous: list[str] = []  # the tests the last sentence named (what "这些都正常" points at)
        self.label = ""      # "你有几个异常的项目：" over the list items below it: "abnormal" / "normal"
        self.item = False    # the last sentence was a bare list number ("1."): this one is the item's text
        self.line_start = True  # this sentence begins a line (the one before ended with a newline)
        self.verified = Verified(False)  # the last sentence, precision first (`verify_sentence`)

    def state(self) -> tuple:
        return self.subject, list(self.previous), self.label, self.item, self.line_start

    def restore(self, state: tuple) -> None:
        self.subject, self.previous, self.label, self.item = state[0], list(state[1]), state[2], state[3]
        self.line_start = state[4]

    def _labelled(self, sentence: str) -> list[Violation]:
        """Under a label line ("异常项目：", "你有几个异常的项目：") each top-level list item is said to be so of the
        first test it names ("1. **收缩压**：130 mmHg…" under 异常的项目), until a plain line."""
        norm = unicodedata.normalize("NFKC", sentence)
        if not norm.strip():
            return []
        label = _LABEL_HEAD.search(norm.strip())
        if label:
            self.label, self.item = ("normal" if label.group("d") == "正常" else "abnormal"), False
            return []
        if _LIST_NUMBER.match(norm):
            self.item = True
            return []
        top = self.item or bool(re.match(r"(?:[-•·+]|\*(?!\*)|\d+\s*[.、)）])", norm))
        item, self.item = self.item, False
        if not top:
            if not re.match(r"\s", norm) and self.line_start:
                self.label = ""  # a plain line ends the list (not the item's own later sentences)
            return []
        if not self.label:
            return []
        first = _aliases().regex.search(norm.lower())
        name = first.group(0) if first and not _unit_like(norm.lower(), first) else ""
        lead = _ITEM_NAME.match(norm.lower())
        if lead and (not name or lead.start("n") < first.start()) and _norm_alias(lead.group("n")) in _aliases().resolve:
            name = _norm_alias(lead.group("n"))  # "- 氯：10": a short name that heads the item is the test
        if not name:
            return []
        word = "异常" if self.label == "abnormal" else "正常"
        return check_sentence(name + word, self.findings, block_unreported=self.block_unreported) \
            if item or top else []

    def _value_subject(self, sentence: str) -> str:
        """"正常高值：85 umol/L" under no heading: the name of the one reported test with that value (and unit), + "："."""
        m = _VALUE_LINE.match(unicodedata.normalize("NFKC", sentence).lower())
        if not m or not _DIR_RE.fullmatch(m.group("d").strip()):
            return ""
        num, unit = float(m.group("num")), _norm_alias(m.group("unit"))
        keys = {f.name for f in self.findings if isinstance(f.value, (int, float)) and abs(f.value - num) < 1e-9
                and (not unit or _norm_alias(f.unit) == unit) and _norm_alias(f.name) in _aliases().resolve}
        return keys.pop() + "：" if len(keys) == 1 else ""

    def check(self, sentence: str) -> list[Violation]:
        self.verified = Verified(False)
        if not sentence.strip():
            self.line_start = self.line_start or "\n" in sentence
            return []
        text, prefix, covered = sentence, "", ()  # prefix: what the reader put before the sentence's own words
        head = _HEADING.match(unicodedata.normalize("NFKC", sentence))
        if head and _norm_alias(_BRACKET.sub("", head.group("name"))) in _aliases().resolve and (
                not head.group("value") or not _HEAD_VALUE_REST.sub("", _VALUE.sub("", head.group("value").lower()))):
            self.subject = head.group("name").strip()
        elif _BULLET.match(sentence) and not _NUMBERED.match(sentence):
            if self.subject and not _names_a_test(sentence):
                prefix = self.subject + "："
                text = prefix + _BULLET.sub("", sentence, count=1)
        else:
            self.subject = ""
        if text is sentence and not self.subject and not _names_a_test(sentence):
            prefix = self._value_subject(sentence)  # "正常高值：85 umol/L": the test with that value
            text = prefix + text
        low = unicodedata.normalize("NFKC", text).lower()
        named = list(dict.fromkeys(m.group(0) for m in _aliases().regex.finditer(low)))
        head = _aliases().short_head.match(low) if _aliases().short_head and not named else None
        named = named or ([head.group("n")] if head else [])  # "1. **钾**：3.2 mmol/L。这个值偏低。"
        if not named and self.previous and _DEMONSTRATIVE.match(low):
            prefix = "、".join(self.previous) + "，"  # "…总胆固醇5.0。这些都是正常的。"
            text, named = prefix + text, self.previous
        pointed = None if named or not self.previous or _NO_CLAIM.search(low.strip()) else _POINTER_DIR.search(low)
        if pointed:  # "CEA：2.1 ng/mL，参考 <5 ng/mL。正常值是低于5 ng/mL，所以这个数值偏高。": the last test named before
            prefix = self.previous[-1] + pointed.group("d") + "。"
            text, named = prefix + text, self.previous[-1:]
            covered = ((len(prefix) + pointed.start(), len(prefix) + pointed.end()),)  # verified with the claim before
        verdict = None if named else _BARE_VERDICT.match(low)
        if verdict and self.previous:  # "空腹血糖6.5。正常。": said of the tests named just before
            prefix = "、".join(self.previous) + "，"
            text, named = prefix + text, self.previous
            verdict = None
        self.previous = named
        out = check_sentence(text, self.findings, block_unreported=self.block_unreported) + self._labelled(sentence)
        self.line_start = sentence.endswith("\n")
        if verdict:  # an answer that opens with "正常高值。": the report called normal
            d = "abnormal" if verdict.group("d") == "异常" else "normal"
            v = check_claim(Claim(alias=sentence.strip(), keys=("*",), kind="report", direction=d,
                                  sentence=sentence.strip(), condition=True), {f.key: f for f in self.findings})
            out += [v] if v and v.kind == "contradiction" else []
            covered = ((0, len(text)),) if v is None and any(f.status != "ungraded" for f in self.findings) else ()
        start = len(unicodedata.normalize("NFKC", prefix))
        if pointed and not any(_agrees(c, {f.key: f for f in self.findings}) for c in extract_claims(prefix)):
            covered = ()
        self.verified = verify_sentence(text, self.findings, start=start, covered=covered)
        return out


# ---- the explanation ming writes itself -------------------------------------------------------------
GENERIC = "超出参考范围，意义需结合症状和其他检查，建议复查或请医生解读"


@lru_cache(maxsize=1)
def _meanings() -> dict:
    import yaml

    return yaml.safe_load(_table_text("abnormal_meanings.yaml"))


def meaning(f: Finding) -> tuple[str, str]:
    """(what this abnormal value commonly means, source label)."""
    spec = _meanings()
    entry = spec["tests"].get(f.key) or {}
    text = entry.get(f.status) or entry.get("abnormal" if f.status != "normal" else "") or ""
    src = spec["sources"].get(entry.get("source", ""), entry.get("source", ""))
    return (text, src) if text else (GENERIC, "")


def compose_explanation(findings: list[Finding]) -> str:
    """An explanation built only from the findings: each abnormal value, its common meaning, the source."""
    spec = _meanings()
    ab = [f for f in findings if is_abnormal(f) and f.key not in ("SBP", "DBP")]
    ungraded = [f for f in findings if f.status == "ungraded"]
    crit = [f for f in findings if f.critical]
    head = [f"⚠️ 危急值：{'、'.join(f'{f.name} {f.value_text}' for f in crit)}，可能危及生命，请立即联系医生或去急诊。"] if crit else []
    if not ab:
        lines = [f"按参考范围，这次识别到的 {len(findings) - len(ungraded)} 项结果都在正常范围内。"]
    else:
        lines = [f"按参考范围，以下 {len(ab)} 项超出范围（其余正常）："]
        for f in ab:
            text, src = meaning(f)
            what = f.category if f.key == "BP" else STATUS_ZH[f.status].split(" ")[0]
            lines.append(f"- {f.name} {f.value_text}，{what}：{text}" + (f"（来源：{src}）" if src else "") + "。")
        keys = {(f.key, f.status) for f in ab}
        for p in spec.get("patterns", []):
            if all(any((k, p.get("status", "high")) in keys for k in slot) for slot in p["all"]):
                lines.append(f"- 综合来看：{p['text']}（来源：{spec['sources'].get(p['source'], p['source'])}）。")
    if ungraded:
        lines.append(f"另有 {len(ungraded)} 项未能按参考表判断（{'、'.join(f.name for f in ungraded)}），请以报告所印范围为准。")
    lines.append("以上是按常见原因的一般说明，不是诊断；请带报告找医生结合症状解读，必要时复查。")
    return "\n".join(head + lines)


def retry_hint(violations: list[Violation]) -> str:
    """System-prompt addendum for the one regeneration after a contradiction."""
    said = "；".join(dict.fromkeys(v.describe() for v in violations))
    return ("【更正】上一次回答与检验结果不符：" + said + "。请严格按检验结果表解释：只说表中标为偏高/偏低/异常的项目异常，"
            "表中正常的项目不要说成异常，不要评价报告里没有的项目。")


FALLBACK_HEADER = "\n\n（以下解释由 ming 根据检验结果整理）\n"
ADVICE_HEADER = "\n\n一般建议：\n"


class ReportPostCheck:
    """The check as a post-check of the turn pipeline (duck-typed `ming.respond.PostCheck`; the grounding
    stage wraps it). A contradicting sentence is never shown: the first one asks the pipeline to regenerate
    (`ming.respond.Regenerate` with `retry_hint`: the model starts again after the text already shown, the
    contradiction named in its system text); if that is not possible or the new text contradicts too, the
    sentence and every later one are held back and `finish` returns the explanation composed from the
    findings, followed by up to `max_advice` held sentences that name no test (the model's general advice).

    `strict` (precision first, the default): a sentence that names a test or evaluates a result and that the
    checker cannot verify (`verify_sentence`) is dropped too, without a regeneration, and the answer goes on;
    the reader forgets it (what follows is read against what was shown). If nothing the model said about the
    results was shown, `finish` adds the composed explanation after the model's text."""

    stage = "grounding"

    def __init__(self, findings: list[Finding], *, block_unreported: bool = False, fallback: bool = True,
                 retry: bool = True, max_advice: int = 4, strict: bool = True):
        self.findings, self.block_unreported, self.fallback = findings, block_unreported, fallback
        self.retry, self.max_advice, self.strict = retry, max_advice, strict
        self.dropped: list[str] = []  # sentences about the results that could not be verified (strict)
        self.explained = False  # a sentence about the results was shown
        self.reader = AnswerReader(findings, block_unreported=block_unreported)
        self._shown = self.reader.state()  # the reader's state after the last sentence shown (a regeneration goes on from there)
        self.violations: list[Violation] = []
        self.held: list[str] = []
        self.advice: list[str] = []
        self.failed = False  # a contradiction this attempt: hold everything that follows
        self.regenerated = False
        self.attempts = 1
        self.number = ""  # strict: a bare list number ("1.", "2. **") waits for the item text it numbers
        # strict: a line that announces what follows ("有几个项目异常：") waits for it, and goes if nothing follows
        self.intro, self._explained_before_intro, self._dropped_at_intro = "", False, 0

    def sentence(self, text: str, shown: str = "") -> "str | Regenerate":
        if not self.strict or self.failed:
            return self._sentence(text, shown)
        if self.intro and not text.strip():
            if len(self.dropped) == self._dropped_at_intro:
                self.intro += text  # its blank lines go with it; not the end of a line dropped under it
            return ""
        explained = self.explained
        out = self._item(text, shown)
        if not isinstance(out, str) or not out.strip():
            return out
        if _INTRO.search(out):  # "根据结果，有几个项目异常：" shown alone would dangle when its list is dropped
            if not self.intro:
                self._explained_before_intro = explained
            self.intro += out
            self._dropped_at_intro = len(self.dropped)
            return ""
        out, self.intro = self.intro + out, ""
        return out

    @property
    def pending(self) -> str:
        return self.intro

    def _item(self, text: str, shown: str) -> "str | Regenerate":
        if _BARE_ITEM.match(unicodedata.normalize("NFKC", text)):
            out = self._sentence(text, shown)
            if isinstance(out, str) and out:
                self.number = out  # an earlier number whose item was dropped goes with it
                return ""
            return out
        if self.number and re.fullmatch(r"[\s*_#]*", text):  # "3." then " **" (cut at the token limit)
            self.number += text
            return ""
        out = self._sentence(text, shown)
        if isinstance(out, str) and out.strip() and self.number:
            out = self.number + out
        self.number = ""
        return out

    def _sentence(self, text: str, shown: str = "") -> "str | Regenerate":
        if self.failed:
            self.held.append(text)
            if text.strip() and len(self.advice) < self.max_advice and not _names_a_test(text) and not extract_claims(text) \
                    and not _points_back(text) and not _states_a_direction(text) and not _ANTECEDENT.match(text) \
                    and len(re.findall(r"[\u4e00-\u9fff]", text)) >= 2 \
                    and not (self.strict and verify_sentence(text, self.findings).about):  # not a stray "2.3.4." either
                self.advice.append(text.strip())  # general advice: names no test and says nothing of the report
            return ""
        if self.strict and not text.strip() and (not shown.strip() or shown.endswith("\n\n")):
            return ""  # no blank lines before the answer, nor where dropped lines leave a run of them
        bad = self.reader.check(text)
        if not bad and self.strict and not self.reader.verified.ok:
            self.dropped.append(text)  # precision first: not verified, not shown; read on from what was shown
            self.reader.restore(self._shown)
            newline = text.endswith("\n") and shown.strip() != "" and not shown.endswith("\n")
            self.reader.line_start = self.reader.line_start or text.endswith("\n")
            self._shown = self.reader.state()
            return "\n" if newline else ""
        if not bad:
            self.explained = self.explained or self.reader.verified.about
            self._shown = self.reader.state()
            return text
        self.violations += bad
        self.held.append(text)
        self.failed = True  # until the pipeline says it regenerates
        return Regenerate(retry_hint(bad)) if self.retry and not self.regenerated else ""

    def regenerating(self, hint: str) -> None:
        self.failed, self.regenerated, self.number = False, True, ""  # a held intro stays: the model goes on after it
        self.reader.restore(self._shown)
        self.advice.clear()
        self.attempts += 1

    @property
    def composes(self) -> bool:
        """`finish` adds the explanation composed from the findings: after a contradiction that held the rest back,
        or (strict) when nothing the model said about the results could be shown."""
        return self.fallback and (self.failed or (self.strict and bool(self.dropped) and not self.explained))

    def finish(self, shown: str = "") -> str:
        if self.intro:  # nothing it announced was shown: it goes too
            self.dropped.append(self.intro)
            self.explained, self.intro = self._explained_before_intro, ""
        if not self.composes:
            return ""
        text = (FALLBACK_HEADER if shown.strip() else FALLBACK_HEADER.lstrip("\n")) + compose_explanation(self.findings)
        if self.failed and self.advice:  # the model's general advice that was held back with the rest
            text += ADVICE_HEADER + "".join(self.advice)
        return text

    def to_dict(self) -> dict:
        return {"checked": True, "attempts": self.attempts, "regenerated": self.regenerated,
                "held_sentences": len(self.held), "fallback": bool(self.failed and self.fallback),
                "violations": [v.to_dict() for v in self.violations], "strict": self.strict,
                "dropped_sentences": len(self.dropped), "dropped": [t.strip() for t in self.dropped[:12]],
                "composed": self.composes}
