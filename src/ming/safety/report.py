"""Lab / physical-exam report parsing, normalisation and grading.

Reads reports as people paste them:
  - the MING showcase format  `肝功能十项='白球比例 = [1.96]、…、γ-谷氨酰基转移酶 = [65] ↑'`
  - table rows                `谷丙转氨酶(ALT)  56  ↑  U/L  9-50`, `ALT 35 U/L (0-40)`
  - free text                 `血压130/85，空腹血糖6.5，总胆固醇5.2`

Test names are normalised with the alias table (tables/reference_ranges.yaml), values are graded
against the range printed in the report if there is one, else the curated adult range (sex-aware, pregnancy-aware
for WBC / Hb, mg/dL -> mmol/L etc. converted); an arrow / H / L printed in the report wins over the curated range,
not over printed numbers it contradicts. Values past the table's critical limits (危急值) carry `critical`, which
the safety policy escalates. Blood pressure is classified per 中国高血压防治指南 (2018/2024). The text is cleaned
first (`clean_text`: full-width forms, OCR'd O/l inside numbers, characters spaced out by an OCR).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources

STATUS_ZH = {"high": "偏高 ↑", "low": "偏低 ↓", "normal": "正常", "abnormal": "异常", "ungraded": "未判断"}
GRADED = ("high", "low", "normal", "abnormal")
_TITRE = r"[<>≤≥]?\s*1\s*:\s*\d+"  # a titre: TRUST 1:8, ANA 1:100
_QUAL = (_TITRE + r"|弱阳性|阳性|阴性|可疑|微量|trace|neg(?:ative)?|pos(?:itive)?|non-?reactive|reactive|未见异常|未见|未找到|未检出"
         r"|满视野|weakly positive|weak positive|normal|正常|±|\+-|\+/-"
         r"|[1-4]\+|\+{1,4}|\(\+{1,4}\)|\(-\)|\(±\)|(?<![\d.])-(?![\d.])")
_NUM = r"[<>≤≥]?\s*(?:(?<=[\s:])-)?\d+(?:\.\d+)?"  # -8.5: a base excess
_VALUE = re.compile(
    r"^(?:估算值|测定值|检测值|测定|定量|浓度|含量|水平)?"  # a neutral suffix of the name: 肾小球滤过率估算值
    r"[\s)\]]*(?:\([A-Za-z0-9#%/\-\s.\u4e00-\u9fff]{1,12}\)|\[[A-Za-z0-9#%/\-]{1,12}\]\s*(?=[\[\d=:]))?"
    r"(?:\s+[A-Z][A-Za-z]{1,5}(?=\s))?"  # an abbreviation the table does not know: 胆红素 BIL 阴性
    r"\s*(?:(?:报告|化验单|单子|结果)?上?(?:写着?|显示|提示)(?:的是|是|为)?|[=:]|结果|为|是|测得|检测值|有|达到?|只有|才)?\s*"
    r"\[?\s*(?:(?P<bp>\d{2,3})\s*/\s*(?P<bp2>\d{2,3})|(?P<qual>" + _QUAL + r")|(?P<num>" + _NUM + r")"
    r"(?:\s*[-~]\s*(?P<num2>\d+(?:\.\d+)?)(?=\s*(?:个\s*)?/\s*[HL]P)|(?![\d+:]|\s*/\s*\d))"
    r"(?!\s*(?:小时|分钟|天|周|岁|年|个月|斤|公斤)))\s*\]?",  # 空腹8小时: a duration, not a value
    re.I)
_FLAG = re.compile(r"(↑+|↓+|(?<![^\s(\[])(?:HH|LL|H|L|High|HIGH|Low|LOW)(?![^\s)\]])|偏高|偏低|升高|降低|增高|减低|(?<![\u4e00-\u9fff])[高低](?![\u4e00-\u9fff]))")
_RANGE = re.compile(r"(?P<lo>\d+(?:\.\d+)?)\s*(?:-{1,2}|~|～|—|–|至|到)\s*(?P<hi>\d+(?:\.\d+)?)"
                    r"|(?P<lt>[<≤]|小于|低于)\s*(?P<ltv>\d+(?:\.\d+)?)|(?P<gt>[>≥]|大于|高于)\s*(?P<gtv>\d+(?:\.\d+)?)")
_ITEM_END = re.compile(r"[、;；，,\n]")  # where one item's value, unit and printed range end
_UNIT = re.compile(r"(?:[x×*]?\s*10\s*(?:\^|\*|e)?\s*(?:9|12)\s*/\s*l|m?g/24\s*h|[μuµ]mol/l|mmol/l|pmol/l|nmol/l|mg/dl|[μuµ]g/dl|g/dl|mg/l|g/l|"
                   r"ng/ml|ng/l|[μuµ]g/ml|[μuµ]g/l|pg/ml|[μuµ]iu/ml|miu/l|miu/ml|iu/ml|iu/l|ku/l|mu/l|u/ml|u/l|mg/mmol|mg/g|mmhg|"
                   r"ml/min(?:/1\.73m2)?|mm/h|fl|pg|kg/m2|kg|cm|次/分|bpm|kpa|(?<![a-z])[gt]/l|/mm3|个?/\s*[hl]p|个?/\s*[μuµ]l|(?<![a-z])(?:s|sec)(?![a-z/])|秒|%)",
                   re.I)
_SEX = re.compile(r"性别\s*[:：]?\s*(男|女)|[（(](男|女)[）)]|(?:^|[\s,，。;；(（])(男|女)(?:性)?\s*[,，、\s]?\s*\d{1,3}\s*岁|(男|女)性|(?:先生|男士)|(?:女士|小姐)")
_SECTION = re.compile(r"(尿常规|尿液分析|尿液|尿检|大便常规|大便|粪便|粪常规|血气|血常规|血细胞分析|肝功能|肾功能|血脂|血糖|乙肝|"
                      r"甲功|甲状腺|一般检查|电解质|心肌酶|性激素|OGTT|糖耐量|葡萄糖耐量|[Uu]rinalysis|[Uu]rine)")
# which names change meaning inside a section (reference_ranges.yaml `sections`): the section word's first character
_SECTION_KIND = {"尿": "urine", "Ur": "urine", "ur": "urine", "大": "stool", "粪": "stool", "血气": "blood_gas", "性": "hormone", "OG": "ogtt", "糖耐": "ogtt",
                 "葡萄": "ogtt"}


def _section_kind(name: str) -> str:
    return _SECTION_KIND.get(name[:2]) or _SECTION_KIND.get(name[:1], "")


@dataclass
class Finding:
    key: str
    name: str
    raw_name: str
    value: float | str
    unit: str = ""
    ref_low: float | None = None
    ref_high: float | None = None
    ref_text: str = ""
    ref_source: str = ""
    status: str = "normal"            # high | low | normal | abnormal
    flag: str = ""                    # arrow / H / L printed in the report
    category: str = ""                # guideline category (e.g. 正常高值, 边缘升高)
    note: str = ""
    comparator: str = ""              # "<" / ">" / "≤" / "≥" of a censored value ("<0.5": below what the lab measures)
    value_low: float | None = None    # a count printed as a span ("8-12 /HP"): its lower end; `value` is the upper
    critical: str = ""                # a critical value (危急值): the limit it is past, "危急值 >6.2 mmol/L"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reference_range"] = self.ref_text
        return d

    @property
    def value_text(self) -> str:
        v = self.value
        if isinstance(v, float):
            v = f"{v:g}" if self.value_low is None else f"{self.value_low:g}-{v:g}"
        return f"{self.comparator}{v} {self.unit}".strip()


@dataclass
class ReportTable:
    tests: dict
    alias_to_key: dict
    alias_re: re.Pattern
    urine_section: dict = field(default_factory=dict)
    by_unit: dict = field(default_factory=dict)        # bare alias -> {unit key | "default": test key}
    urine_numeric: dict = field(default_factory=dict)  # alias -> microscopy test inside a urine section
    sections: dict = field(default_factory=dict)       # section kind (stool, blood_gas, hormone) -> {alias: test}


def _trie_regex(words: list[str]) -> str:
    """A regex alternation built from a trie, so matching costs ~one branch per position."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        end = "" in node
        branches = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not branches:
            return ""
        alt = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{alt})?" if end else alt

    return build(trie)


def _norm_alias(a: str) -> str:
    return unicodedata.normalize("NFKC", str(a)).lower().replace(" ", "")


@lru_cache(maxsize=1)
def load_table() -> ReportTable:
    import yaml

    text = resources.files("ming.safety").joinpath("tables/reference_ranges.yaml").read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    tests = spec["tests"]
    for part in ("critical", "pregnant"):  # limits kept in blocks of their own, read as fields of each test
        for key, v in (spec.get(part) or {}).items():
            tests[key][part] = v
    alias_to_key: dict[str, str] = {}
    for key, t in tests.items():
        for a in [t["name"], *t.get("aliases", [])]:
            alias_to_key.setdefault(_norm_alias(a), key)
            if " " in str(a):  # "fasting glucose" as written, with its space
                alias_to_key.setdefault(" ".join(unicodedata.normalize("NFKC", str(a)).lower().split()), key)
    alias_to_key.setdefault("血压", "BP")
    alias_to_key.setdefault("bp", "BP")
    by_unit = {_norm_alias(a): {_unit_key(u): k for u, k in m.items()} for a, m in (spec.get("by_unit") or {}).items()}
    for a, m in by_unit.items():
        alias_to_key.setdefault(a, m.get("default", ""))  # "" : no test unless the unit names one
    sections = {kind: {_norm_alias(a): k for a, k in m.items()} for kind, m in (spec.get("sections") or {}).items()}
    for m in [*sections.values(), spec.get("urine_section") or {}]:
        for a in m:
            alias_to_key.setdefault(_norm_alias(a), "")  # a name only inside its section (胆红素 in a urine test)
    words = sorted(alias_to_key, key=len, reverse=True)
    # ASCII aliases must not sit inside a longer ASCII word ("LD" in "LDL", "P" in "PLT")
    rx = re.compile(r"(?<![a-z])(?:" + _trie_regex(words) + r")(?![a-z])")
    return ReportTable(tests, alias_to_key, rx, {_norm_alias(k): v for k, v in spec.get("urine_section", {}).items()},
                       by_unit, {_norm_alias(k): v for k, v in (spec.get("urine_numeric") or {}).items()}, sections)


_NEGATIVE = ("阴性", "-", "neg", "negative", "未见异常", "正常", "未见", "未找到", "未检出", "normal", "nonreactive",
             "non-reactive")


def _qual_norm(q: str) -> str:
    q = q.strip("()（）").lower().replace(" ", "")
    if q in _NEGATIVE or q[:1] in "<≤" and ":" in q:  # "<1:100": below the titre the lab calls positive
        return "negative"
    if q in ("弱阳性", "±", "+-", "+/-", "可疑", "微量", "trace", "weaklypositive", "weakpositive"):
        return "weak"
    return "positive"


_QUAL_ZH = {"negative": "阴性", "weak": "弱阳性", "positive": "阳性"}


_KIN = re.compile(r"我(?:爸|爸爸|父亲|老爸|老公|丈夫|爷爷|外公|姥爷|儿子|哥|弟)|我(?:妈|妈妈|母亲|老妈|老婆|妻子|媳妇|奶奶|外婆|姥姥|女儿|姐|妹)"
                  r"|(?<![备想没未])(?:怀孕|孕\d{1,2}周|妊娠|孕期|产后|月经)")
_KIN_MALE = ("爸", "父", "老公", "丈夫", "爷", "外公", "姥爷", "儿子", "哥", "弟")


def detect_sex(text: str) -> str | None:
    """The sex the report states (性别：女, 男 45岁, 女士 …), else the one its subject implies (我爸, 我妈, 孕24周, 月经)."""
    m = _SEX.search(text)
    if not m:
        k = _KIN.search(text)
        return None if not k else "male" if any(w in k.group(0) for w in _KIN_MALE) else "female"
    g = next((x for x in m.groups() if x), None)
    if g:
        return "male" if g == "男" else "female"
    return "male" if m.group(0) in ("先生", "男士") else "female"


def _range_for(t: dict, sex: str | None, pregnant: bool = False) -> tuple[float | None, float | None, str]:
    if pregnant and "pregnant" in t:  # 白细胞 up to 15 and 血红蛋白 from 110 in pregnancy
        r = t["pregnant"]
        return r.get("low"), r.get("high"), "孕期"
    if "male" in t:
        if sex in ("male", "female"):
            r = t[sex]
            return r["low"], r["high"], "男" if sex == "male" else "女"
        lo = min(t["male"]["low"], t["female"]["low"])
        hi = max(t["male"]["high"], t["female"]["high"])
        return lo, hi, "男女合并"
    return t.get("low"), t.get("high"), ""


def _fmt_range(lo, hi) -> str:
    f = lambda x: f"{x:g}"  # noqa: E731
    if lo is not None and hi is not None:
        return f"{f(lo)}–{f(hi)}" if lo > 0 else f"<{f(hi)}" if hi else ""
    if lo is not None:
        return f"≥{f(lo)}"
    return f"≤{f(hi)}" if hi is not None else ""


@lru_cache(maxsize=512)
def _unit_key(u: str) -> str:
    u = u.lower().replace(" ", "").replace("µ", "u").replace("μ", "u")
    u = re.sub(r"^[x×*]?10(?:\^|\*|e)?(9|12)/l$", r"10^\1/l", u)
    u = {"iu/l": "u/l", "秒": "s", "sec": "s", "个/hp": "/hp", "个/lp": "/lp", "个/ul": "/ul", "/mm3": "/ul", "iu/ml": "u/ml"}.get(u, u)
    return u


def _route_by_unit(routes: dict, value: float, rest: str) -> str:
    """The test a bare name ("中性粒细胞") means, from the unit after its value, else from the value."""
    um = _UNIT.search(rest)
    if um and _unit_key(um.group(0)) in routes:
        return routes[_unit_key(um.group(0))]
    tests = load_table().tests

    def distance(k: str) -> float:  # how far the value sits from the middle of the range, on a log scale
        t = tests[k]
        if t.get("high") is None:
            return math.inf
        mid = ((t.get("low") or 0) + t["high"]) / 2
        return abs(math.log(max(value, 1e-6) / mid))

    if "default" not in routes:  # a bare name that means a test only with its unit ("T 0.92 ng/mL")
        return ""
    cands = sorted({k for u, k in routes.items() if u != "default"}, key=distance)
    return cands[0] if cands and value > 0 else routes["default"]


def _category(t: dict, v: float) -> str:
    for c in t.get("cutoffs", []):
        if v < c["below"]:
            return c["label"]
    return ""


def _grade_numeric(key: str, t: dict, raw: str, value: float, rest: str, sex: str | None, pregnant: bool = False) -> Finding:
    f = Finding(key=key, name=t["name"], raw_name=raw, value=value, unit=t.get("unit", ""))
    um = _UNIT.search(rest)
    unit = um.group(0) if um else ""
    if unit:
        f.unit = unit.replace(" ", "")
    flag = _FLAG.search(_UNIT.sub(" ", rest))
    if flag:
        f.flag = flag.group(0)
    rng = _RANGE.search(rest)
    # ---- grade against the printed range first
    if rng and not (rng.group("lo") and float(rng.group("lo")) == value):
        if rng.group("lo"):
            f.ref_low, f.ref_high = float(rng.group("lo")), float(rng.group("hi"))
        elif rng.group("lt"):
            f.ref_high = float(rng.group("ltv"))
        else:
            f.ref_low = float(rng.group("gtv"))
        f.ref_text = (f"{f.ref_low:g}–{f.ref_high:g}" if rng.group("lo") else rng.group(0).replace(" ", "")) + (f" {f.unit}" if unit else "")
        f.ref_source = "报告所印参考范围"
        v_cmp = value
    elif t.get("info"):
        f.ref_source, f.status = "仅记录", "ungraded"
        f.note = t.get("note", "") or "无通用参考区间，未判断"
        return f
    else:
        lo, hi, which = _range_for(t, sex, pregnant)
        factor = 1.0
        ukey = _unit_key(unit) if unit else ""
        canon = _unit_key(t.get("unit", ""))
        alts = {_unit_key(k): v for k, v in (t.get("alt_units") or {}).items()}
        if ukey and ukey != canon and ukey in alts:
            factor = alts[ukey]
        elif ukey and ukey != canon:
            f.note = f"单位 {unit} 与参考表单位 {t.get('unit') or '（无）'} 不同且无法换算"
            if not f.flag:
                f.status, f.ref_source = "ungraded", ""
                f.note += "，请以报告所印参考范围为准"
                return f
            f.ref_source = "报告标记"
            lo = hi = None
        elif not ukey and alts and t.get("guess_unit", True) and _unitless(alts, value, lo, hi):
            # no unit and implausible in the canonical unit: the alternative it fits (mg/dL, g/dL are the usual)
            alt_u, factor = _unitless(alts, value, lo, hi)
            f.note = f"未写单位，按 {alt_u} 理解并换算"
            f.unit = "（未写单位）"  # not the table's unit: the value was read as alt_u
        v_cmp = value * factor
        if factor != 1.0:
            # graded at the precision labs print the converted unit in (126 mg/dL is the 7.0 mmol/L cut-off,
            # not 6.99): one decimal, two below 1
            nd = 1 if v_cmp >= 1 else 2
            v_cmp = round(v_cmp, nd)
            f.note = (f.note + "；" if f.note else "") + f"换算为 {v_cmp:.{nd}f} {t.get('unit', '')}"
        f.ref_low, f.ref_high = lo, hi
        if f.ref_source != "报告标记":
            f.ref_text = _fmt_range(lo, hi) + (f" {t.get('unit', '')}" if t.get("unit") else "")
            f.ref_source = t.get("source", "") + (f"（{which}）" if which else "")
        f.category = _category(t, v_cmp)
    by_range = ("high" if f.ref_high is not None and v_cmp > f.ref_high else
                "low" if f.ref_low is not None and v_cmp < f.ref_low else "normal")
    f.status = by_range
    if f.flag:
        fl = f.flag
        marked = "low" if fl in ("偏低", "降低", "减低", "低", "L", "LL", "Low", "LOW") or fl.startswith("↓") else "high"
        on_bound = v_cmp in (f.ref_low, f.ref_high)
        if f.ref_source == "报告所印参考范围" and marked != by_range and not on_bound:
            # the printed numbers over a mark that contradicts them (an arrow typed by hand, or shifted a row by an OCR)
            f.note = (f.note + "；" if f.note else "") + f"报告标记 {fl} 与所印参考范围不符，按参考范围判断"
        elif by_range not in ("normal", marked) and f.ref_source != "报告标记":
            # no printed range and the curated one says the opposite direction: the mark is not this value's
            f.note = (f.note + "；" if f.note else "") + f"报告标记 {fl} 与参考范围方向相反，按参考范围判断"
        else:
            f.status = marked
    if not f.category and f.ref_source not in ("报告所印参考范围", "报告标记"):
        f.category = _category(t, v_cmp)
    if t.get("note") and f.status != "normal":
        f.note = (f.note + "；" if f.note else "") + t["note"]
    return f


_WORD = re.compile(r"弱阳性|阳性|阴性|\((?:\+{1,4}|-|±)\)|non-?reactive|reactive|positive|negative", re.I)
_TITRE_RANGE = re.compile(r"[<≤]\s*1\s*:\s*(\d+)")
_ANY_UNIT = re.compile(r"\s*([A-Za-zμµ%][A-Za-z0-9μµ%/.]{0,9})")


def _grade_qual(key: str, t: dict, raw: str, q: str, rest: str, sex: str | None = None, pregnant: bool = False) -> Finding:
    qn = _qual_norm(q)
    if t.get("kind") != "qualitative":  # a count word on a counted test: 未见 (none), 满视野 (too many to count)
        lo, hi, _ = _range_for(t, sex, pregnant)
        return Finding(key=key, name=t["name"], raw_name=raw, value=q, unit=t.get("unit", ""), ref_low=lo, ref_high=hi,
                       ref_text=_fmt_range(lo, hi) + (f" {t['unit']}" if t.get("unit") else ""), ref_source=t.get("source", ""),
                       status="normal" if qn == "negative" else "high", category=_QUAL_ZH[qn] if qn == "negative" else q)
    f = Finding(key=key, name=t["name"], raw_name=raw, value=q, ref_text="阴性" if t.get("normal") == ["negative"] else
                "/".join(_QUAL_ZH[x] for x in t.get("normal", ["negative"])), ref_source=t.get("source", ""))
    if ":" in q and qn == "positive":  # a titre: positive from the titre the lab prints as its limit, or as it says
        word, limit = _WORD.search(rest), _TITRE_RANGE.search(rest)
        if word:
            qn = _qual_norm(word.group(0))
        elif limit:
            qn = "positive" if int(q.split(":")[1]) >= int(limit.group(1)) else "negative"
            f.ref_text, f.ref_source = limit.group(0), "报告所印参考范围"
    flag = _FLAG.search(_UNIT.sub(" ", rest))
    f.flag = flag.group(0) if flag else ""
    f.status = "normal" if qn in t.get("normal", ["negative"]) and not f.flag else "abnormal"
    f.category = _QUAL_ZH[qn]
    if t.get("note"):
        f.note = t["note"]
    return f


def _numeric_qual(key: str, t: dict, raw: str, value: float, rest: str, comparator: str) -> Finding:
    """A number for a test read as 阴性/阳性 (乙肝表面抗原 0.01 IU/mL, 丙肝抗体 0.08 S/CO): the word the report prints
    beside it, else its printed range (inside: 阴性), else the table's cut-off; else 未判断."""
    um = _ANY_UNIT.match(rest)
    unit = um.group(1) if um and not _WORD.match(um.group(1)) else ""
    f = Finding(key=key, name=t["name"], raw_name=raw, value=value, unit=unit, comparator=comparator)
    word, rng, cut = _WORD.search(rest), _RANGE.search(rest), t.get("cutoff")
    if word:
        qn = _qual_norm(word.group(0))
        f.ref_text, f.ref_source = "阴性", "报告所印结论"
    elif rng:
        lo = float(rng.group("lo") or rng.group("gtv") or "-inf")
        hi = float(rng.group("hi") or rng.group("ltv") or "inf")
        inside = lo <= value <= hi if not rng.group("lt") else value < hi or comparator in ("<", "≤") and value <= hi
        qn = "negative" if inside else "positive"
        f.ref_text, f.ref_source = rng.group(0).replace(" ", "") + (f" {unit}" if unit else "") + " 为阴性", "报告所印参考范围"
    elif cut and (not unit or _unit_key(unit) == _unit_key(cut.get("unit", ""))):
        qn = "negative" if value < cut["value"] or comparator in ("<", "≤") else "positive"  # "<20": not detected
        f.ref_text, f.ref_source = f"<{cut['value']:g} {cut.get('unit', '')} 为阴性".replace("  ", " "), t.get("source", "")
    else:
        f.ref_text, f.status = "阴性", "ungraded"
        f.note = "参考表按定性（阴性/阳性）判断，报告给出的是数值，请以报告所印参考范围为准"
        return f
    f.status = "normal" if qn in t.get("normal", ["negative"]) else "abnormal"
    f.category = _QUAL_ZH[qn]
    if t.get("note"):
        f.note = t["note"]
    return f


def _unitless(alts: dict, value: float, lo: float | None, hi: float | None) -> tuple[str, float] | None:
    """(unit, factor) of the alternative unit a value printed without one must be in: far above the table's range
    (血糖 126: mg/dL) or far below it (血红蛋白 9.2: g/dL; 肌酐 1.8: mg/dL); None when it fits the table's unit."""
    if hi is not None and hi < 900 and value > 3 * hi:
        return next(((u, fac) for u, fac in alts.items() if value * fac <= 3 * hi), None)
    if lo and value < lo / 3:
        return next(((u, fac) for u, fac in alts.items() if fac > 1 and lo / 3 <= value * fac <= 3 * (hi or lo)), None)
    return None


def _canonical(t: dict, value: float, rest: str) -> float | None:
    """`value` in the table's unit (None when its printed unit cannot be converted)."""
    um = _UNIT.search(rest)
    alts = {_unit_key(k): v for k, v in (t.get("alt_units") or {}).items()}
    if um:
        ukey, canon = _unit_key(um.group(0)), _unit_key(t.get("unit", ""))
        return value if ukey == canon else value * alts[ukey] if ukey in alts else None
    lo, hi, _ = _range_for(t, None)
    alt = _unitless(alts, value, lo, hi) if alts and t.get("guess_unit", True) else None  # as _grade_numeric reads it
    return value * alt[1] if alt else value


def _critical(f: Finding, t: dict, v: float | None, text: str = "") -> Finding:
    """Mark a critical value (危急值: the lab phones these to the doctor at once) from the table's `critical` limits;
    `unless` names a known chronic state in which the value is expected (肌酐 892 in a patient on 透析)."""
    c = t.get("critical")
    if not c or v is None or f.status == "normal":  # normal by the range the lab printed: not its critical value
        return f
    if c.get("unless") and re.search(c["unless"], text):
        return f
    unit = t.get("unit", "")
    if c.get("low") is not None and (v < c["low"] or f.comparator in ("<", "≤") and v <= c["low"]):
        f.critical = f"危急值 <{c['low']:g} {unit}".strip()
    elif c.get("high") is not None and (v > c["high"] or f.comparator in (">", "≥") and v >= c["high"]):
        f.critical = f"危急值 >{c['high']:g} {unit}".strip()
    return f


def _bp_findings(raw: str, s: int, d: int) -> list[Finding]:
    tab = load_table().tests
    out = []
    for key, v in (("SBP", s), ("DBP", d)):
        t = tab[key]
        f = Finding(key=key, name=t["name"], raw_name=raw, value=float(v), unit="mmHg", ref_low=t["low"], ref_high=t["high"],
                    ref_text=("90–139" if key == "SBP" else "60–89") + " mmHg", ref_source=t["source"], category=_category(t, v))
        f.status = "high" if v > t["high"] else "low" if v < t["low"] else "normal"
        out.append(f)
    out.append(classify_bp(s, d, raw))
    return out


def classify_bp(s: int, d: int, raw: str = "血压") -> Finding:
    """中国高血压防治指南 2018/2024: 正常 <120/<80; 正常高值 120–139/80–89; 高血压 ≥140/≥90 (1/2/3级)."""
    if s >= 180 or d >= 110:
        cat, st = "3级高血压范围（≥180/≥110）", "high"
    elif s >= 160 or d >= 100:
        cat, st = "2级高血压范围（160–179/100–109）", "high"
    elif s >= 140 or d >= 90:
        cat = "单纯收缩期高血压范围（≥140/<90）" if d < 90 else "1级高血压范围（140–159/90–99）"
        st = "high"
    elif s >= 120 or d >= 80:
        cat, st = "正常高值（120–139/80–89），未达高血压", "normal"
    elif s < 90 or d < 60:
        cat, st = "低血压范围（<90/60）", "low"
    else:
        cat, st = "正常血压（<120/80）", "normal"
    note = "一次测量不能诊断高血压，需非同日3次测量" if st == "high" else ""
    return Finding(key="BP", name="血压分级", raw_name=raw, value=f"{s}/{d}", unit="mmHg", ref_text="<140/90 mmHg（<120/80 为理想）",
                   ref_source="中国高血压防治指南（2018/2024）", status=st, category=cat, note=note)


_UNIT_WORDS = frozenset({"mg", "g", "l", "u", "s", "iu", "pg", "ml", "mm", "cm", "kg", "t", "p"})


def _unit_like(low: str, m: re.Match) -> bool:
    """An ASCII alias standing where a unit stands ('240 mg/dL': Mg is not magnesium here)."""
    if not m.group(0).isascii():
        return False
    if low[m.end():m.end() + 1] == "/":
        return True
    if m.group(0) not in _UNIT_WORDS:  # "WBC 7.5 RBC 4.6 HGB 140": a test after a value, not its unit
        return False
    before = low[:m.start()]
    stripped = before.rstrip(" \t")
    if stripped == before or not re.search(r"(?<![A-Za-z\u4e00-\u9fff])\d+(?:\.\d+)?$", stripped):
        return False
    line = stripped[stripped.rfind("\n") + 1:]  # a row number opening the line ("12    eGFR  78") is not a value
    return not re.fullmatch(r"\s*\d{1,3}[.、)）]?", line)


_OCR_DIGITS = re.compile(r"(?<![A-Za-z])(?=[0-9Ol.]*\d)[0-9Ol]+(?:\.[0-9Ol]+)?(?![A-Za-z])"
                         r"|(?<![A-Za-z0-9])[Ol](?=\.?\d|\s*[-~]\s*[0-9Ol]*\.?[0-9Ol]*\d)")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}),(\d{3})(?![\d.,])")  # 1,280 ng/mL (an ASCII comma: "，" lists items)
_OCR_HINT = re.compile(r"[\d.][Ol]|[Ol]\.?\d")
_SPACED_SLASH = re.compile(r"(?<=[A-Za-zμ]) +/ *(?=[A-Za-z])|(?<=[A-Za-zμ]) */ +(?=[A-Za-z])")  # not "15 /HP"
_SPACED_DIGITS = re.compile(r"(?<![\d.])\d(?: [\d.])+(?![\d.])")
_SPACED = re.compile(r"[\u4e00-\u9fff](?: [\u4e00-\u9fff]){2,}")
_NAME_GAP = re.compile(r"[\s()\[\]/]*")  # what may stand between two names of one test: 总胆固醇 TC, 白细胞计数(WBC)


def clean_text(text: str) -> str:
    """The report as the parser reads it: NFKC (full-width digits, letters and colons), digits an OCR read as
    letters ("4.O2", "l40", "O.89", "5O-31O": O -> 0, l -> 1 inside a number) and characters spaced out by an
    OCR ("谷 丙 转 氨 酶") joined."""
    t = unicodedata.normalize("NFKC", _THOUSANDS.sub(r"\1\2", text))
    if _OCR_HINT.search(t):
        t = _OCR_DIGITS.sub(lambda m: m.group(0).replace("O", "0").replace("l", "1"), t)
    if " " in t:
        if _SPACED.search(t):  # an OCR that spaced out the characters spaces out digits too: "5 6", "2 8 . 6"
            t = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), t)
            t = _SPACED_DIGITS.sub(lambda m: m.group(0).replace(" ", ""), t)
        t = _SPACED_SLASH.sub("/", t)  # mmol / L
    return t


_MARKED_CRITICAL = re.compile(r"危急|critical|panic", re.I)
_PREGNANT = re.compile(r"(?<!备)(?<!想)(?<!没)(?<!未)(?:怀孕|妊娠|孕\s*\d{1,2}\s*[周+]|孕[早中晚]期|孕期|产检)")


def parse_report(text: str, sex: str | None = None) -> list[Finding]:
    """All findings in `text`, in order of appearance, one per test (first occurrence wins)."""
    if not text or not re.search(r"\d|阴性|阳性|[+]", text):
        return []
    table = load_table()
    t = clean_text(text)
    sex = sex or detect_sex(t)
    pregnant = sex != "male" and bool(_PREGNANT.search(t))
    low = t.lower()
    hits = [(m.start(), m.end(), m.group(0)) for m in table.alias_re.finditer(low) if not _unit_like(low, m)]
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(t)]
    findings: list[Finding] = []
    seen: set[str] = set()
    spans: list[tuple[int, int]] = []  # text consumed by a recognised test and its value
    names: list[tuple[int, int, str]] = []  # the names read so far for the value ahead (总胆固醇 TC 6.48)
    for i, (s, e, alias) in enumerate(hits):
        nxt = hits[i + 1][0] if i + 1 < len(hits) else len(t)
        seg = t[e:nxt]
        names.append((s, e, alias))
        vm = _VALUE.match(seg)
        if not vm:
            if not _NAME_GAP.fullmatch(seg):
                names = []
            continue
        group, names = names, []
        rest = seg[vm.end():]
        cut = _ITEM_END.search(rest)
        rest = rest[: cut.start()] if cut else rest
        s = group[0][0]
        raw = t[s:e] + (")" if t.count("(", s, e) > t.count(")", s, e) else "")  # 白细胞计数(WBC)
        section = next((name for pos, name in reversed(sections) if pos <= s), "")
        kind = _section_kind(section) if section else ""
        qual = vm.group("qual")
        cands = [(a, _key_for(table, a, kind, vm, seg)) for _, _, a in group]
        if qual is None:
            key = next((k for _, k in cands if k), "")
        else:  # the first name that can take a word (尿糖 GLU ++++ is the urine glucose; 白细胞 阳性 the dipstick)
            key = next((k for _, k in cands if k and (table.tests.get(k, {}).get("kind") == "qualitative"
                                                        or _count_word(qual, k, table))), "")
            key = key or next((table.urine_section[a] for a, _ in cands if a in table.urine_section), "")
        if not key:
            continue
        if key == "BP":
            if vm.group("bp") and "BP" not in seen:
                seen.update({"BP", "SBP", "DBP"})
                spans.append((s, e + vm.end()))
                findings += _bp_findings(raw, int(vm.group("bp")), int(vm.group("bp2")))
            continue
        if vm.group("bp") or key in seen:
            continue
        tdef = table.tests[key]
        if qual is not None:
            if tdef.get("kind") != "qualitative" and not _count_word(qual, key, table):
                continue
            seen.add(key)
            spans.append((s, e + vm.end()))
            findings.append(_critical(_grade_qual(key, tdef, raw, qual, rest, sex, pregnant), tdef, None))
            continue
        num = vm.group("num").replace(" ", "")
        comparator = num[0] if num[0] in "<>≤≥" else ""
        num = num[len(comparator):]
        seen.add(key)
        spans.append((s, e + vm.end()))
        value = float(vm.group("num2") or num)  # a count printed as "8-12 /HP" is graded by its upper end
        if rest.lstrip().startswith("万"):  # 血小板15万 (per uL): 150 ×10^9/L; another test in 万 is not read
            if key not in ("PLT", "WBC"):
                seen.discard(key)
                continue
            value, rest = value * 10, "×10^9/L" + rest.lstrip()[1:]
        if tdef.get("kind") == "qualitative":  # a number where the table expects 阴性/阳性
            findings.append(_numeric_qual(key, tdef, raw, value, rest, comparator))
            continue
        f = _censored(_grade_numeric(key, tdef, raw, value, rest, sex, pregnant), comparator)
        if vm.group("num2"):
            f.value_low = float(num)
        findings.append(_critical(f, tdef, _canonical(tdef, value, rest), t))
        if _MARKED_CRITICAL.search(rest) and not f.critical:  # the lab printed it as critical itself
            f.critical = "报告标注危急值"
    if "SBP" in seen and "DBP" in seen and "BP" not in seen:
        s_ = next(f for f in findings if f.key == "SBP")
        d_ = next(f for f in findings if f.key == "DBP")
        findings.append(classify_bp(int(s_.value), int(d_.value), "收缩压/舒张压"))
    if findings:
        findings += _unknown_items(t, spans)
    return findings


def _key_for(table: ReportTable, alias: str, kind: str, vm: re.Match, seg: str) -> str:
    """The test a name means here: its section's meaning (尿常规: 红细胞 is the dipstick blood, or the microscopy
    count when a number follows), the unit after its value (中性粒细胞 85% / 6.2×10^9/L), else the alias table."""
    key = table.alias_to_key.get(alias, "")
    if kind == "urine" and (alias in table.urine_section or alias in table.urine_numeric):
        key = table.urine_section.get(alias, key)
        if vm.group("num") is not None and alias in table.urine_numeric:
            key = table.urine_numeric[alias]
    elif kind and alias in table.sections.get(kind, {}):
        key = table.sections[kind][alias]
    elif alias in table.by_unit and vm.group("num") is not None:
        key = _route_by_unit(table.by_unit[alias], float(vm.group("num").replace(" ", "").lstrip("<>≤≥")), seg[vm.end():])
    return key


def _count_word(q: str, key: str, table: ReportTable) -> bool:
    """A word read as a count on a numeric test: 未见 / 阴性 (none seen) or 满视野 (too many to count)."""
    t = table.tests.get(key, {})
    return t.get("unit") in ("/HP", "/LP") and (q.lower().strip("()") in _NEGATIVE or q == "满视野")


def _censored(f: Finding, comparator: str) -> Finding:
    """A value printed as "<x" / ">x" is graded by where it must lie: "<0.5" against 0.5–3 is low, "<0.5" against
    0–3 normal, ">1000" against <100 high."""
    f.comparator = comparator
    if comparator and isinstance(f.value, float) and f.status == "normal":
        if comparator in "<≤" and f.ref_low is not None and f.ref_low > 0 and f.value <= f.ref_low:
            f.status = "low"
        elif comparator in ">≥" and f.ref_high is not None and f.value >= f.ref_high:
            f.status = "high"
    return f


_UNKNOWN = re.compile(r"(?P<name>[A-Za-z\u4e00-\u9fff][A-Za-z0-9\u4e00-\u9fff\-#%()（）/]{0,15}?)\s*(?:[=:：]|结果|为)?\s*\[?\s*"
                      r"(?P<cmp>[<>≤≥])?\s*(?P<num>\d+(?:\.\d+)?)\s*\]?\s*(?:[↑↓HL]\s*)?(?P<unit>" + _UNIT.pattern + r")", re.I)
_NUM_UNIT = re.compile(r"(?<![\d.])\d+(?:\.\d+)?\s*\]?\s*(?:[↑↓HL]\s*)?(?:" + _UNIT.pattern + r")", re.I)
_NOT_A_TEST = re.compile(r"^(?:岁|年|月|天|周|次|个|片|粒|毫升|我|今年|体检|检查|结果|报告|化验|复查|最近|上次)")


def _unknown_items(t: str, spans: list[tuple[int, int]]) -> list[Finding]:
    """Name + value + unit the table does not know (or a test named a second time): listed as ungraded, never
    dropped."""
    if all(any(a <= m.start() < b for a, b in spans) for m in _NUM_UNIT.finditer(t)):
        return []  # every number with a unit belongs to a test already read (the costly scan below is skipped)
    table = load_table()
    out = []
    for m in _UNKNOWN.finditer(t):
        if any(a <= m.start("num") < b for a, b in spans):
            continue
        name = re.sub(r"^[\s、，,;；。:：(（)）\[\]]+", "", m.group("name")).strip("（()）")
        name = re.sub(r"(?:大约|约|为|是|达)$", "", name)
        if not name or _NOT_A_TEST.match(name):
            continue
        key, num, unit = f"UNKNOWN:{name}", float(m.group("num")), m.group("unit")
        if table.alias_re.fullmatch(_norm_alias(name)):  # a test named again: its first value was graded
            out.append(Finding(key=key, name=name, raw_name=name, value=num, unit=unit, status="ungraded",
                               note="同一项目在报告中再次出现，只判断了第一次的结果；请以报告所印参考范围为准",
                               comparator=m.group("cmp") or ""))
            continue
        rest = _ITEM_END.split(t[m.start("unit"):], maxsplit=1)[0]
        f = _censored(_grade_numeric(key, {"name": name, "unit": unit, "info": True}, name, num, rest, None),
                      m.group("cmp") or "")
        if f.status == "ungraded":
            f.note, f.ref_source = "参考表中没有这一项，未判断；请以报告所印参考范围为准", ""
        else:
            f.note = "参考表中没有这一项"  # graded by the printed range (ref_source says so)
        out.append(f)
    return out


def critical_notice(findings: list[Finding]) -> str:
    """The line shown first when a report has critical values ('' when none): which, and what to do now."""
    crit = [f for f in findings if f.critical]
    if not crit:
        return ""
    items = "；".join(f"{f.name} {f.value_text}（{STATUS_ZH[f.status].split(' ')[0]}，{f.critical}）" for f in crit)
    return (f"⚠️ **危急值：{items}。** 这类结果可能危及生命，检验科通常会立即通知医生。如果还没有医生处理，请马上联系开单医生"
            "或立即去急诊（必要时拨打 120）；已经在住院的，请马上告诉值班医生或护士。")


def is_abnormal(f: Finding) -> bool:
    """Graded and outside its range (ungraded items are neither normal nor abnormal)."""
    return f.status in ("high", "low", "abnormal")


def findings_table(findings: list[Finding], markdown: bool = True) -> str:
    """The findings as a table for the user (markdown by default, aligned plain text otherwise)."""
    if not findings:
        return ""
    head = ["项目", "结果", "参考范围", "判断", "说明"]
    rows = []
    for f in findings:
        judge = ("⚠️危急值 " if f.critical else "") + STATUS_ZH.get(f.status, f.status) + (f"（报告标记 {f.flag}）" if f.flag else "")
        note = "；".join(x for x in (f.critical, f.category, f.note, f.ref_source) if x)
        rows.append([f.name if f.name == f.raw_name else f"{f.name}（{f.raw_name}）", f.value_text, f.ref_text, judge, note])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(_w(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(c + " " * (w - _w(c)) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def _w(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def grounding_text(findings: list[Finding], short: bool = False) -> str:
    """System-prompt addendum so the model's explanation rests on the parsed findings. `short`: the
    form for a nearly full context window (abnormal items with value and range; normal ones named)."""
    abnormal = [f for f in findings if is_abnormal(f)]
    ungraded = [f for f in findings if f.status == "ungraded"]
    if short:
        items = "；".join(f"{f.name} {f.value_text}（参考 {f.ref_text or '—'}）{STATUS_ZH[f.status]}" for f in abnormal)
        normal = "、".join(f.name for f in findings if f.status == "normal")
        crit = "、".join(f"{f.name} {f.value_text}" for f in findings if f.critical)
        return ("【检验结果（程序已与参考范围比较，以此为准）】"
                + (f"危急值：{crit}，回答第一句必须先指出这是危急值、请立即联系医生或去急诊。" if crit else "")
                + (f"异常 {len(abnormal)} 项：{items}。" if abnormal else "")
                + (f"正常：{normal}。" if normal else "")
                + (f"未判断（不要评价高低）：{'、'.join(f.name for f in ungraded)}。" if ungraded else "")
                + "要求：只把异常项目说成异常，解释其常见原因和下一步（复查、生活方式、何时就医），不做确定诊断，不编造数值。")
    lines = ["【检验/体检结果（程序解析并已与参考范围比较，解释时以此为准，不要自行改判）】"]
    crit = [f for f in findings if f.critical]
    if crit:
        lines.append(f"【危急值 {len(crit)} 项：{'、'.join(f'{f.name} {f.value_text}' for f in crit)}】回答第一句必须先指出这是危急值、"
                     "可能危及生命，请立即联系医生或去急诊，然后再解释。")
    for f in findings:
        extra = "；".join(x for x in (f.critical, f.category, f.note) if x)
        lines.append(f"- {f.name}：{f.value_text}，参考 {f.ref_text or '—'}（{f.ref_source}）→ {STATUS_ZH[f.status]}"
                     + (f"；{extra}" if extra else ""))
    lines.append(f"共 {len(findings)} 项，其中异常 {len(abnormal)} 项"
                 + (f"：{'、'.join(f.name for f in abnormal)}" if abnormal else "")
                 + (f"；未判断 {len(ungraded)} 项（{'、'.join(f.name for f in ungraded)}），不要评价其高低" if ungraded else "") + "。")
    lines.append("要求：只把上面标为偏高/偏低/异常的项目说成异常，正常项目（包括“正常高值”“合适水平”）不要说成偏高；"
                 "解释每个异常项目的常见原因和下一步（复查、生活方式、何时就医），不要做确定诊断，不要编造报告中没有的数值。")
    return "\n".join(lines)


_ITEM_SEP = re.compile(r"(?<=[，,；;、。！？!?\n])")


def shorten_report(text: str) -> tuple[str, int]:
    """`text` with the normal items of a pasted report left out (the abnormal ones, and everything that
    is not a test result, stay), and a note saying how many went. Returns (text, items left out)."""
    if not parse_report(text):
        return text, 0
    sex = detect_sex(unicodedata.normalize("NFKC", text))
    kept: list[str] = []
    dropped = 0
    for piece in _ITEM_SEP.split(text):
        found = parse_report(piece, sex)
        if found and all(f.status == "normal" for f in found):
            dropped += len(found)
            continue
        kept.append(piece)
    if not dropped:
        return text, 0
    out = "".join(kept).rstrip("，,；;、 ")
    return out + f"\n（其余 {dropped} 项结果正常，为适应上下文长度已省略）", dropped
