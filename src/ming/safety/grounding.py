"""Hold the model's words to the findings ming computed for a pasted report.

    violations = check_sentence(sentence, findings)  # findings = ming.safety.report.parse_report(text)
    check = ReportPostCheck(findings)                # the grounding stage's post-check (grounding_stage.py)

A *claim* is a test name (report aliases, tables/analyte_aliases.yaml) followed in the same sentence by a
direction word (偏高/升高/降低/正常/异常/阳性 …, with negation "不高"/"没有升高"). Conditional or general
sentences ("如果血糖升高…", "以防止…") make no claim. A claim contradicts a finding when the direction
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
from dataclasses import dataclass, field
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
    ("normal", r"正常高值|正常范围内?|正常水平|正常值?(?![值范参人情])|未见(?:明显)?异常|无(?:明显)?异常|没有(?:明显)?异常|在参考(?:范围|区间)内|阴性"),
    ("abnormal", r"不正常|异常|阳性"),
    ("high", r"偏高|升高|增高|增多|增加|超标|(?:超出|超过|高于|高出)了?(?:正常|参考)(?:范围|区间|值|上限)?|超出|过高|高于|较高"
             r"|偏多|上升|高出|↑"),
    ("low", r"偏低|降低|减低|减少|下降|过低|(?:低于|不到)了?(?:正常|参考)(?:范围|区间|值|下限)?|低于|较低|偏少|不足|↓"),
]
_DIR_RE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _DIR_WORDS))
_SHORT_DIR = re.compile(r"^(?P<neg>不|没|并不|不算)?(?:稍|略|有点|有些|比较|较|很|太|偏|都|均|也|明显|轻度|显著|有所|稍微|略微)?"
                        r"(?P<d>高|低)(?![血压糖脂钾钠钙尿蛋白密])")
_NEG = re.compile(r"(?:不|没有?|未|无|并非|并不|并没有|不算)(?:明显|太|很|特别|怎么)?$")
_NEGATED = {"high": "not_high", "low": "not_low", "normal": "abnormal", "abnormal": "normal"}
# a sentence that states no fact about this patient: conditions, prevention, questions, general ranges
_NO_CLAIM = re.compile(r"如果|假如|若是|倘若|一旦|万一|是否|有无|有没有|防止|避免|以免|预防|警惕|恢复正常|降至正常|回到正常|趋于正常"
                       r"|正常值(?:是|为|在)|正常范围(?:是|为)|参考(?:范围|区间|值)(?:是|为)|[?？]$|^若|^如[^何此下今]"
                       r"|(?:正常|偏高|偏低|升高|降低|异常|阳性|阴性)\s*(?:/|或|还是|或者)\s*(?:正常|偏高|偏低|升高|降低|异常|阳性|阴性)")
_JOIN = re.compile(r"^(?:[\s、,，/()（）]|和|与|及|以及|跟|还有|、)*$")
_CLAUSE_GAP = 24  # characters allowed between a test name and its direction word

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


@lru_cache(maxsize=1)
def _aliases() -> _Aliases:
    import yaml

    spec = yaml.safe_load(_table_text("analyte_aliases.yaml"))
    table = load_table()
    skip = {_norm_alias(a) for a in spec.get("skip", [])}
    resolve: dict[str, tuple] = {a: ((k,), "single") for a, k in table.alias_to_key.items() if a not in skip}
    for a, k in (spec.get("extra") or {}).items():
        resolve[_norm_alias(a)] = ((k,), "single")
    for a, g in (spec.get("groups") or {}).items():
        resolve[_norm_alias(a)] = (tuple(g["members"]), g["kind"])
    for a, routes in table.by_unit.items():
        if a not in skip and resolve.get(a, ((), ""))[1] == "single":
            resolve[a] = (tuple(dict.fromkeys(k for u, k in routes.items() if u != "default")), "either")
    words = sorted(resolve, key=len, reverse=True)
    conds = {_norm_alias(t): (tuple(c["members"]), c["kind"], c["direction"])
             for t, c in (spec.get("conditions") or {}).items()}
    return _Aliases(re.compile(r"(?<![a-z])(?:" + _trie_regex(words) + r")(?![a-z])"), resolve, conds,
                    re.compile(_trie_regex(sorted(conds, key=len, reverse=True))) if conds else None)


def _table_text(name: str) -> str:
    return resources.files("ming.safety").joinpath(f"tables/{name}").read_text(encoding="utf-8")


def _names_a_test(text: str) -> bool:
    return bool(_aliases().regex.search(unicodedata.normalize("NFKC", text).lower()))


def extract_claims(sentence: str) -> list[Claim]:
    """Every (test, direction) statement in one sentence; [] for conditional / general sentences."""
    s = unicodedata.normalize("NFKC", sentence)
    low = s.lower()
    if not low.strip() or _NO_CLAIM.search(low.strip()):
        return []
    al = _aliases()
    claims: list[Claim] = _condition_claims(s, low, sentence) + _whole_report_claims(s, low, sentence)
    taken = [(c_start, c_end) for c_start, c_end in _condition_spans(low)]
    names = [(m.start(), m.end(), m.group(0)) for m in al.regex.finditer(low)
             if not _unit_like(low, m) and not any(a <= m.start() < b for a, b in taken)]
    if not names:
        return claims
    pending: list[tuple[int, int, str]] = []
    pos = 0
    events = sorted([(st, "name", (st, en, a)) for st, en, a in names]
                    + [(m.start(), "dir", m) for m in _DIR_RE.finditer(low)], key=lambda e: e[0])
    for start, kind, obj in events:
        if start < pos:
            continue
        if kind == "name":
            st, en, a = obj
            if pending and not _JOIN.match(low[pending[-1][1]:st]):
                pending = []  # "血常规检查提示血红蛋白高": only names joined by 和/、/及 share a direction
            pending.append(obj)
            pos = en
            short = _SHORT_DIR.match(low[en:])
            if short:  # "血红蛋白高", "血糖有点低": single-character direction right after the name
                d = "high" if short.group("d") == "高" else "low"
                if short.group("neg"):
                    d = _NEGATED[d]
                claims += _claims_for(pending, d, low, st, sentence)
                pending, pos = [], en + short.end()
            continue
        m = obj
        d = m.lastgroup
        neg = _NEG.search(low[max(0, m.start() - 5):m.start()])
        if neg:
            d = _NEGATED[d]
        if pending and m.start() - pending[-1][1] <= _CLAUSE_GAP:
            claims += _claims_for(pending, d, low, m.start(), sentence)
            pending = []
        elif low[m.end():m.end() + 1] == "的":  # "偏高的白细胞"
            nxt = next((n for n in names if n[0] == m.end() + 1), None)
            if nxt:
                claims += _claims_for([nxt], d, low, m.start(), sentence)
                pos = nxt[1]
                continue
        pos = m.end()
    return claims


# "这些数值都符合正常范围", "检查结果均正常", "这个情况是正常的": the whole report called normal (no test named)
_WHOLE_REPORT_NORMAL = re.compile(
    r"(?<![其余它他除])(?:这些|以上|上述|所有|各项|全部|整体|总体|这个|您的|你的)?(?:数值|指标|结果|项目|检查|化验|检验|报告|情况)"
    r"[^，,。；;、]{0,6}?(?:都|均|全部|全都|基本)?(?:是|在|属于|符合|处于)?"
    r"(?:正常范围|正常值范围|正常的|正常|没有(?:明显)?异常|无(?:明显)?异常|未见(?:明显)?异常)")
_WHOLE_REPORT_SKIP = re.compile(r"其余|其他|其它|除了?|之外|以外|部分|有些|大部分|大多")


def _whole_report_claims(s: str, low: str, sentence: str) -> list[Claim]:
    m = _WHOLE_REPORT_NORMAL.search(low)
    if not m or _WHOLE_REPORT_SKIP.search(low) or _aliases().regex.search(low[m.start():m.end()]):
        return []
    return [Claim(alias=s[m.start():m.end()] if len(s) == len(low) else m.group(0), keys=("*",), kind="report",
                  direction="normal", sentence=sentence.strip(), condition=True)]


_GENERAL = re.compile(r"^(?:的)?(?:患者|病人|人群|的人|者|病友|人士)")
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
                         sentence=sentence.strip(), condition=True))
    return out


def _claims_for(names, direction, low, at, sentence) -> list[Claim]:
    al = _aliases()
    out = []
    for st, en, a in names:
        keys, kind = al.resolve[a]
        out.append(Claim(alias=sentence[st:en] if len(sentence) == len(low) else a, keys=keys, kind=kind,
                         direction=direction, sentence=sentence.strip()))
    return out


def check_claim(claim: Claim, by_key: dict[str, Finding]) -> Violation | None:
    found = list(by_key.values()) if claim.kind == "report" else [by_key[k] for k in claim.keys if k in by_key]
    if not found:
        return Violation(claim, "unreported")
    graded = [f for f in found if f.status != "ungraded"]
    if not graded:
        return None
    ok = [claim.direction in CONSISTENT[f.status] for f in graded]
    if claim.kind in ("panel", "report"):
        if claim.direction in ("normal", "not_high", "not_low"):
            bad = not all(ok)
        else:
            bad = not any(ok)
    else:
        bad = not any(ok)
    return Violation(claim, "contradiction", [f for f, good in zip(graded, ok) if not good]) if bad else None


def check_sentence(sentence: str, findings: list[Finding], *, block_unreported: bool = False) -> list[Violation]:
    """Violations in one sentence: contradictions, plus claims about unreported tests if `block_unreported`."""
    by_key = {f.key: f for f in findings}
    out = []
    for c in extract_claims(sentence):
        v = check_claim(c, by_key)
        if v and (v.kind == "contradiction" or block_unreported):
            out.append(v)
    return out


def check_text(text: str, findings: list[Finding], *, block_unreported: bool = False) -> list[Violation]:
    sents, rest = split_sentences(text)
    return [v for s in sents + [rest] for v in check_sentence(s, findings, block_unreported=block_unreported)]


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
    if not ab:
        lines = [f"按参考范围，这次识别到的 {len(findings) - len(ungraded)} 项结果都在正常范围内。"]
    else:
        lines = [f"按参考范围，以下 {len(ab)} 项超出范围（其余正常）："]
        for f in ab:
            text, src = meaning(f)
            what = f.category if f.key == "BP" else STATUS_ZH[f.status].split(" ")[0]
            lines.append(f"- {f.name} {f.value_text}，{what}：{text}" + (f"（来源：{src}）" if src else "") + "。")
        keys = {f.key for f in ab}
        for p in spec.get("patterns", []):
            if all(any(k in keys for k in slot) for slot in p["all"]):
                lines.append(f"- 综合来看：{p['text']}（来源：{spec['sources'].get(p['source'], p['source'])}）。")
    if ungraded:
        lines.append(f"另有 {len(ungraded)} 项未能按参考表判断（{'、'.join(f.name for f in ungraded)}），请以报告所印范围为准。")
    lines.append("以上是按常见原因的一般说明，不是诊断；请带报告找医生结合症状解读，必要时复查。")
    return "\n".join(lines)


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
    findings, followed by up to `max_advice` held sentences that name no test (the model's general advice)."""

    stage = "grounding"

    def __init__(self, findings: list[Finding], *, block_unreported: bool = False, fallback: bool = True,
                 retry: bool = True, max_advice: int = 4):
        self.findings, self.block_unreported, self.fallback = findings, block_unreported, fallback
        self.retry, self.max_advice = retry, max_advice
        self.violations: list[Violation] = []
        self.held: list[str] = []
        self.advice: list[str] = []
        self.failed = False  # a contradiction this attempt: hold everything that follows
        self.regenerated = False
        self.attempts = 1

    def sentence(self, text: str, shown: str = "") -> "str | Regenerate":
        if self.failed:
            self.held.append(text)
            if text.strip() and len(self.advice) < self.max_advice and not _names_a_test(text):
                self.advice.append(text.strip())
            return ""
        bad = check_sentence(text, self.findings, block_unreported=self.block_unreported)
        if not bad:
            return text
        self.violations += bad
        self.held.append(text)
        self.failed = True  # until the pipeline says it regenerates
        return Regenerate(retry_hint(bad)) if self.retry and not self.regenerated else ""

    def regenerating(self, hint: str) -> None:
        self.failed, self.regenerated = False, True
        self.advice.clear()
        self.attempts += 1

    def finish(self, shown: str = "") -> str:
        if not (self.failed and self.fallback):
            return ""
        text = (FALLBACK_HEADER if shown.strip() else FALLBACK_HEADER.lstrip("\n")) + compose_explanation(self.findings)
        if self.advice:
            text += ADVICE_HEADER + "".join(self.advice)
        return text

    def to_dict(self) -> dict:
        return {"checked": True, "attempts": self.attempts, "regenerated": self.regenerated,
                "held_sentences": len(self.held), "fallback": bool(self.failed and self.fallback),
                "violations": [v.to_dict() for v in self.violations]}
