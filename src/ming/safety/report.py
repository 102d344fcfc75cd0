"""Lab / physical-exam report parsing, normalisation and grading.

Reads reports as people paste them:
  - the MING showcase format  `肝功能十项='白球比例 = [1.96]、…、γ-谷氨酰基转移酶 = [65] ↑'`
  - table rows                `谷丙转氨酶(ALT)  56  ↑  U/L  9-50`, `ALT 35 U/L (0-40)`
  - free text                 `血压130/85，空腹血糖6.5，总胆固醇5.2`

Test names are normalised with the alias table (tables/reference_ranges.yaml), values are graded
against the range printed in the report if there is one, else the curated adult range (sex-aware,
mg/dL -> mmol/L etc. converted); arrows / H / L printed in the report win over both. Blood pressure
is classified per 中国高血压防治指南 (2018/2024).
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
_QUAL = (r"弱阳性|阳性|阴性|可疑|微量|trace|neg(?:ative)?|pos(?:itive)?|未见异常|正常|±|\+-|\+/-"
         r"|[1-4]\+|\+{1,4}|\(\+{1,4}\)|\(-\)|\(±\)|(?<![\d.])-(?![\d.])")
_NUM = r"[<>≤≥]?\s*\d+(?:\.\d+)?"
_VALUE = re.compile(
    r"^(?:估算值|测定值|检测值|测定|定量|浓度|含量|水平)?"  # a neutral suffix of the name: 肾小球滤过率估算值
    r"[\s)\]]*(?:\([A-Za-z0-9#%/\-\s]{1,12}\)|\[[A-Za-z0-9#%/\-]{1,12}\]\s*(?=[\[\d=:]))?\s*(?:[=:]|结果|为|是|测得|检测值)?\s*"
    r"\[?\s*(?:(?P<bp>\d{2,3})\s*/\s*(?P<bp2>\d{2,3})|(?P<qual>" + _QUAL + r")|(?P<num>" + _NUM + r")(?![\d/+]))\s*\]?",
    re.I)
_FLAG = re.compile(r"(↑+|↓+|(?<![^\s(\[])(?:HH|LL|H|L)(?![^\s)\]])|偏高|偏低|升高|降低|增高|减低|(?<![\u4e00-\u9fff])[高低](?![\u4e00-\u9fff]))")
_RANGE = re.compile(r"(?P<lo>\d+(?:\.\d+)?)\s*(?:-{1,2}|~|～|—|–|至|到)\s*(?P<hi>\d+(?:\.\d+)?)"
                    r"|(?P<lt>[<≤]|小于|低于)\s*(?P<ltv>\d+(?:\.\d+)?)|(?P<gt>[>≥]|大于|高于)\s*(?P<gtv>\d+(?:\.\d+)?)")
_ITEM_END = re.compile(r"[、;；，,\n]")  # where one item's value, unit and printed range end
_UNIT = re.compile(r"(?:[x×*]?\s*10\s*(?:\^|\*|e)?\s*(?:9|12)\s*/\s*l|[μuµ]mol/l|mmol/l|pmol/l|nmol/l|mg/dl|[μuµ]g/dl|g/dl|mg/l|g/l|"
                   r"ng/ml|ng/l|[μuµ]g/ml|[μuµ]g/l|pg/ml|[μuµ]iu/ml|miu/l|miu/ml|iu/ml|iu/l|ku/l|mu/l|u/ml|u/l|mg/mmol|mg/g|mmhg|"
                   r"ml/min(?:/1\.73m2)?|mm/h|fl|pg|kg/m2|kg|cm|次/分|bpm|个?/\s*hp|个?/\s*[μuµ]l|(?<![a-z])(?:s|sec)(?![a-z/])|秒|%)",
                   re.I)
_SEX = re.compile(r"性别\s*[:：]?\s*(男|女)|[（(](男|女)[）)]|(?:^|[\s,，。;；(（])(男|女)(?:性)?\s*[,，、\s]?\s*\d{1,3}\s*岁|(男|女)性|(?:先生|男士)|(?:女士|小姐)")
_SECTION = re.compile(r"(尿常规|尿液分析|尿液|尿检|血常规|血细胞分析|肝功能|肾功能|血脂|血糖|乙肝|甲功|甲状腺|一般检查|电解质|心肌酶)")


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reference_range"] = self.ref_text
        return d

    @property
    def value_text(self) -> str:
        v = self.value
        if isinstance(v, float):
            v = f"{v:g}"
        return f"{self.comparator}{v} {self.unit}".strip()


@dataclass
class ReportTable:
    tests: dict
    alias_to_key: dict
    alias_re: re.Pattern
    urine_section: dict = field(default_factory=dict)
    by_unit: dict = field(default_factory=dict)        # bare alias -> {unit key | "default": test key}
    urine_numeric: dict = field(default_factory=dict)  # alias -> microscopy test inside a urine section


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
    alias_to_key: dict[str, str] = {}
    for key, t in tests.items():
        for a in [t["name"], *t.get("aliases", [])]:
            alias_to_key.setdefault(_norm_alias(a), key)
    alias_to_key.setdefault("血压", "BP")
    by_unit = {_norm_alias(a): {_unit_key(u): k for u, k in m.items()} for a, m in (spec.get("by_unit") or {}).items()}
    for a, m in by_unit.items():
        alias_to_key.setdefault(a, m["default"])
    words = sorted(alias_to_key, key=len, reverse=True)
    # ASCII aliases must not sit inside a longer ASCII word ("LD" in "LDL", "P" in "PLT")
    rx = re.compile(r"(?<![a-z])(?:" + _trie_regex(words) + r")(?![a-z])")
    return ReportTable(tests, alias_to_key, rx, {_norm_alias(k): v for k, v in spec.get("urine_section", {}).items()},
                       by_unit, {_norm_alias(k): v for k, v in (spec.get("urine_numeric") or {}).items()})


def _qual_norm(q: str) -> str:
    q = q.strip("()（）").lower()
    if q in ("阴性", "-", "neg", "negative", "未见异常", "正常"):
        return "negative"
    if q in ("弱阳性", "±", "+-", "+/-", "可疑", "微量", "trace"):
        return "weak"
    return "positive"


_QUAL_ZH = {"negative": "阴性", "weak": "弱阳性", "positive": "阳性"}


def detect_sex(text: str) -> str | None:
    m = _SEX.search(text)
    if not m:
        return None
    g = next((x for x in m.groups() if x), None)
    if g:
        return "male" if g == "男" else "female"
    return "male" if m.group(0) in ("先生", "男士") else "female"


def _range_for(t: dict, sex: str | None) -> tuple[float | None, float | None, str]:
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


def _unit_key(u: str) -> str:
    u = u.lower().replace(" ", "").replace("µ", "u").replace("μ", "u")
    u = re.sub(r"^[x×*]?10(?:\^|\*|e)?(9|12)/l$", r"10^\1/l", u)
    u = {"iu/l": "u/l", "秒": "s", "sec": "s", "个/hp": "/hp", "个/ul": "/ul", "iu/ml": "u/ml"}.get(u, u)
    return u


def _route_by_unit(routes: dict, value: float, rest: str) -> str:
    """The test a bare name ("中性粒细胞") means, from the unit after its value, else from the value."""
    um = _UNIT.search(rest)
    if um and _unit_key(um.group(0)) in routes:
        return routes[_unit_key(um.group(0))]
    tests = load_table().tests

    def distance(k: str) -> float:  # how far the value sits from the middle of the range, on a log scale
        t = tests[k]
        mid = ((t.get("low") or 0) + t["high"]) / 2
        return abs(math.log(max(value, 1e-6) / mid))

    cands = sorted({k for u, k in routes.items() if u != "default"}, key=distance)
    return cands[0] if cands and value > 0 else routes["default"]


def _category(t: dict, v: float) -> str:
    for c in t.get("cutoffs", []):
        if v < c["below"]:
            return c["label"]
    return ""


def _grade_numeric(key: str, t: dict, raw: str, value: float, rest: str, sex: str | None) -> Finding:
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
        lo, hi, which = _range_for(t, sex)
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
        elif not ukey and alts and hi is not None and hi < 900 and value > 3 * hi:
            # no unit and implausible in the canonical unit: try the alternative (mg/dL is the usual)
            for alt_u, fac in alts.items():
                if value * fac <= 3 * hi:
                    factor, f.note = fac, f"未写单位，按 {alt_u} 理解并换算"
                    f.unit = "（未写单位）"  # not the table's unit: the value was read as alt_u
                    break
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
    if f.flag:
        fl = f.flag
        f.status = "high" if fl[0] in "↑H高偏升增" and fl not in ("偏低",) else "low"
        if fl in ("偏低", "降低", "减低", "低", "L", "LL") or fl.startswith("↓"):
            f.status = "low"
    elif f.ref_high is not None and v_cmp > f.ref_high:
        f.status = "high"
    elif f.ref_low is not None and v_cmp < f.ref_low:
        f.status = "low"
    else:
        f.status = "normal"
    if not f.category and f.ref_source not in ("报告所印参考范围", "报告标记"):
        f.category = _category(t, v_cmp)
    if t.get("note") and f.status != "normal":
        f.note = (f.note + "；" if f.note else "") + t["note"]
    return f


def _grade_qual(key: str, t: dict, raw: str, q: str, rest: str) -> Finding:
    qn = _qual_norm(q)
    f = Finding(key=key, name=t["name"], raw_name=raw, value=q, ref_text="阴性" if t.get("normal") == ["negative"] else
                "/".join(_QUAL_ZH[x] for x in t.get("normal", ["negative"])), ref_source=t.get("source", ""))
    flag = _FLAG.search(_UNIT.sub(" ", rest))
    f.flag = flag.group(0) if flag else ""
    f.status = "normal" if qn in t.get("normal", ["negative"]) and not f.flag else "abnormal"
    f.category = _QUAL_ZH[qn]
    if t.get("note"):
        f.note = t["note"]
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


def _unit_like(low: str, m: re.Match) -> bool:
    """An ASCII alias standing where a unit stands ('240 mg/dL': Mg is not magnesium here)."""
    if not m.group(0).isascii():
        return False
    if low[m.end():m.end() + 1] == "/":
        return True
    before = low[:m.start()]
    stripped = before.rstrip(" \t")
    if stripped == before or not stripped[-1:].isdigit():
        return False
    line = stripped[stripped.rfind("\n") + 1:]  # a row number opening the line ("12    eGFR  78") is not a value
    return not re.fullmatch(r"\s*\d{1,3}[.、)）]?", line)


def parse_report(text: str, sex: str | None = None) -> list[Finding]:
    """All findings in `text`, in order of appearance, one per test (first occurrence wins)."""
    if not text or not re.search(r"\d|阴性|阳性|[+]", text):
        return []
    table = load_table()
    t = unicodedata.normalize("NFKC", text)
    sex = sex or detect_sex(t)
    low = t.lower()
    hits = [(m.start(), m.end(), m.group(0)) for m in table.alias_re.finditer(low) if not _unit_like(low, m)]
    sections = [(m.start(), m.group(1)) for m in _SECTION.finditer(t)]
    findings: list[Finding] = []
    seen: set[str] = set()
    spans: list[tuple[int, int]] = []  # text consumed by a recognised test and its value
    for i, (s, e, alias) in enumerate(hits):
        nxt = hits[i + 1][0] if i + 1 < len(hits) else len(t)
        seg = t[e:nxt]
        vm = _VALUE.match(seg)
        if not vm:
            continue
        rest = seg[vm.end():]
        cut = _ITEM_END.search(rest)
        rest = rest[: cut.start()] if cut else rest
        key = table.alias_to_key[alias]
        raw = t[s:e]
        section = next((name for pos, name in reversed(sections) if pos <= s), "")
        if section.startswith("尿") and alias in table.urine_section:
            key = table.urine_section[alias]
            if vm.group("num") is not None and alias in table.urine_numeric:
                key = table.urine_numeric[alias]
        elif alias in table.by_unit and vm.group("num") is not None:
            key = _route_by_unit(table.by_unit[alias], float(vm.group("num").replace(" ", "").lstrip("<>≤≥")), seg[vm.end():])
        if key == "BP":
            if vm.group("bp") and "BP" not in seen:
                seen.update({"BP", "SBP", "DBP"})
                spans.append((s, e + vm.end()))
                findings += _bp_findings(raw, int(vm.group("bp")), int(vm.group("bp2")))
            continue
        if vm.group("bp"):
            continue
        tdef = table.tests[key]
        if vm.group("qual") is not None:
            if tdef.get("kind") != "qualitative":
                alt = table.urine_section.get(alias)
                if not alt:
                    continue
                key, tdef = alt, table.tests[alt]
            if key in seen:
                continue
            seen.add(key)
            spans.append((s, e + vm.end()))
            findings.append(_grade_qual(key, tdef, raw, vm.group("qual"), rest))
            continue
        num = vm.group("num").replace(" ", "")
        if key in seen:
            continue
        comparator = num[0] if num[0] in "<>≤≥" else ""
        num = num[len(comparator):]
        seen.add(key)
        spans.append((s, e + vm.end()))
        if tdef.get("kind") == "qualitative":  # a number where the table expects 阴性/阳性
            um = _UNIT.search(rest)
            findings.append(Finding(key=key, name=tdef["name"], raw_name=raw, value=float(num), unit=um.group(0) if um else "",
                                    ref_text="阴性", status="ungraded",
                                    note="参考表按定性（阴性/阳性）判断，报告给出的是数值，请以报告所印参考范围为准"))
            continue
        findings.append(_censored(_grade_numeric(key, tdef, raw, float(num), rest, sex), comparator))
    if "SBP" in seen and "DBP" in seen and "BP" not in seen:
        s_ = next(f for f in findings if f.key == "SBP")
        d_ = next(f for f in findings if f.key == "DBP")
        findings.append(classify_bp(int(s_.value), int(d_.value), "收缩压/舒张压"))
    if findings:
        findings += _unknown_items(t, spans)
    return findings


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
_NOT_A_TEST = re.compile(r"^(?:岁|年|月|天|周|次|个|片|粒|毫升|我|今年|体检|检查|结果|报告|化验|复查|最近|上次)")


def _unknown_items(t: str, spans: list[tuple[int, int]]) -> list[Finding]:
    """Name + value + unit the table does not know (or a test named a second time): listed as ungraded, never
    dropped."""
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
        judge = STATUS_ZH.get(f.status, f.status) + (f"（报告标记 {f.flag}）" if f.flag else "")
        note = "；".join(x for x in (f.category, f.note, f.ref_source) if x)
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
        return ("【检验结果（程序已与参考范围比较，以此为准）】" + (f"异常 {len(abnormal)} 项：{items}。" if abnormal else "")
                + (f"正常：{normal}。" if normal else "")
                + (f"未判断（不要评价高低）：{'、'.join(f.name for f in ungraded)}。" if ungraded else "")
                + "要求：只把异常项目说成异常，解释其常见原因和下一步（复查、生活方式、何时就医），不做确定诊断，不编造数值。")
    lines = ["【检验/体检结果（程序解析并已与参考范围比较，解释时以此为准，不要自行改判）】"]
    for f in findings:
        extra = "；".join(x for x in (f.category, f.note) if x)
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
