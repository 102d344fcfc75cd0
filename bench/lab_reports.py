"""Benchmark the lab-report parser (ming.safety.report) on labelled reports.

    .venv/bin/python bench/lab_reports.py                          # the small fixture in tests/fixtures/safety/
    .venv/bin/python bench/lab_reports.py PATH.jsonl [--errors] [--with-sex]

A labelled file has one report a line: {id, text (what the patient pastes), items: [{name as written, key
(an English abbreviation), value as written, unit, flag high|low|normal|positive|negative, critical}], sex?,
age?, notes?}. Each report's text goes through the real `parse_report` (as `SafetyPolicy` calls it: the text
alone; `--with-sex` passes the row's sex too) and its findings are matched to the labelled items:

  - item recall: a labelled item is found when a finding reads the same test (the labelled key resolved through
    the reference table's aliases, or the finding's printed name inside the labelled name) and the same value
    (OCR'd O/l and full-width digits read as digits; for a value like "45-60" either bound);
  - flag agreement on found items: high / low / normal as graded; for positive / negative a qualitative
    finding's reading (阳性/弱阳性 -> positive, 阴性 -> negative) or a numeric one's grade (high / abnormal ->
    positive, normal -> negative); an ungraded finding never agrees;
  - abnormal items (labelled high / low / positive): recall = found with the same direction; precision over
    every finding ming calls abnormal, including findings that match no labelled item (a misread number);
  - critical values: labelled critical items found and marked critical (Finding.critical); critical marks on
    items not labelled critical are counted apart;
  - per format (guessed from the text: ocr / table / sentence).

`--errors` lists the disagreements per report. The labels are one writer's judgement: a disagreement is a
question to look at, not always a parser error.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent / "tests" / "fixtures" / "safety" / "lab_labelled.jsonl"
ABNORMAL = ("high", "low", "positive")
_OCR_NUM = re.compile(r"(?<![A-Za-z])[0-9OolI]+(?:\.[0-9OolI]+)?(?![A-Za-z])")


def _num(s: str) -> float | None:
    """A number as written ("4.O2", "l40", "１２８", "<0.05" -> 0.05), or None."""
    s = unicodedata.normalize("NFKC", str(s)).strip().lstrip("<>≤≥=~约 ")
    s = s.translate(str.maketrans("OolI", "0011"))
    try:
        return float(s)
    except ValueError:
        return None


def _numbers(s: str) -> list[float]:
    s = unicodedata.normalize("NFKC", str(s))
    out = []
    for m in _OCR_NUM.finditer(s):
        v = _num(m.group(0))
        if v is not None and re.search(r"\d", m.group(0)):
            out.append(v)
    return out


def _norm(s: str) -> str:
    return re.sub(r"[\s()（）\[\]]", "", unicodedata.normalize("NFKC", str(s))).lower()


def same_value(label: str, found) -> bool:
    if isinstance(found, float):
        if _num(label) is not None:
            return abs(_num(label) - found) <= 1e-6 * max(1.0, abs(found))
        return any(abs(x - found) <= 1e-6 * max(1.0, abs(found)) for x in _numbers(label))
    a, b = _norm(label), _norm(found)
    return bool(a and b) and (a == b or a in b or b in a)


def candidate_keys(item: dict, table) -> set[str]:
    """The reference-table keys a labelled item's key can mean."""
    from ming.safety.report import _norm_alias

    key = str(item.get("key") or "")
    out = set()
    for k in {key, key.replace("-", ""), key.replace("_", "")}:
        a = _norm_alias(k)
        if a in table.alias_to_key:
            out.add(table.alias_to_key[a])
        if a in table.by_unit:
            out.update(v for v in table.by_unit[a].values())
    # urine tests written "UPRO", "ULEU", "U-GLU": the table's U_ entries
    m = re.fullmatch(r"U[-_]?([A-Z]{2,4})", key.upper())
    if m:
        urine = {"UBG": "URO"}.get(m.group(1), m.group(1))
        for k in (f"U_{urine}", f"U_{urine[:3]}"):
            if k in table.tests:
                out.add(k)
    return out


def finding_flag(f) -> str:
    """A finding's reading in the labels' words: high | low | normal | positive | negative | ungraded."""
    if f.status != "ungraded":  # a qualitative reading, also of a number (乙肝表面抗体 356.2 mIU/mL 阳性)
        if f.category in ("阳性", "弱阳性"):
            return "positive"
        if f.category == "阴性":
            return "negative"
    return {"abnormal": "positive"}.get(f.status, f.status)


def agrees(label: str, got: str) -> bool:
    if label == got:
        return True
    if label == "positive":
        return got in ("high", "positive")
    if label == "negative":
        return got in ("normal", "negative")
    if label == "normal":
        return got == "negative"
    return False


def fmt_of(text: str) -> str:
    """ocr: full-width digits / letters, O or l among digits, spaced-out characters; table: 3+ value rows."""
    if re.search(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]", text) or re.search(r"(?<![A-Za-z])[Ol]\.?\d|\d\.?[Ol](?![A-Za-z])", text) \
            or re.search(r"(?:[\u4e00-\u9fff] ){3,}", text):
        return "ocr"
    rows = [ln for ln in text.splitlines() if re.search(r"\S\s*[:：]?\s*[<>]?\d", ln)]
    return "table" if len(rows) >= 3 else "sentence"


def match(row: dict, findings: list, table) -> tuple[dict, list]:
    """{item index: finding} and the findings no item took."""
    free = list(range(len(findings)))
    got: dict[int, object] = {}
    for i, it in enumerate(row["items"]):
        keys = candidate_keys(it, table)
        name = _norm(it["name"])
        best = None
        for j in free:
            f = findings[j]
            if not same_value(str(it["value"]), f.value):
                continue
            raw = _norm(f.raw_name)
            if f.key in keys:
                best = j
                break
            if best is None and raw and (raw in name or (len(name) >= 2 and name in raw)):
                best = j
        if best is not None:
            got[i] = findings[best]
            free.remove(best)
    return got, [findings[j] for j in free]


def run(path: Path, with_sex: bool, errors: bool) -> dict:
    try:  # the ming on PYTHONPATH (another checkout: PYTHONPATH=<main>/src), else this checkout's
        from ming.safety.report import load_table, parse_report
    except ImportError:
        sys.path.insert(0, str(HERE.parent / "src"))
        from ming.safety.report import load_table, parse_report

    table = load_table()
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    c = collections.Counter()
    by_fmt: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        sex = {"男": "male", "女": "female", "male": "male", "female": "female"}.get(row.get("sex") or "") if with_sex else None
        fs = parse_report(row["text"], sex)
        got, extra = match(row, fs, table)
        fmt = fmt_of(row["text"])
        lines = []
        for i, it in enumerate(row["items"]):
            f = got.get(i)
            lab = it["flag"]
            k = by_fmt[fmt]
            for cc in (c, k):
                cc["items"] += 1
                cc["found"] += f is not None
            crit = bool(getattr(f, "critical", "")) if f is not None else False
            c["crit_label"] += bool(it.get("critical"))
            c["crit_found"] += bool(it.get("critical")) and crit
            c["crit_extra"] += crit and not it.get("critical")
            desc = f"{it['name']} {it['value']}{it.get('unit') or ''} [{lab}{', critical' if it.get('critical') else ''}]"
            if f is None:
                lines.append(f"  MISS  {desc}")
                if lab in ABNORMAL:
                    c["ab_label"] += 1
                    k["ab_label"] += 1
                continue
            fl = finding_flag(f)
            ok = agrees(lab, fl)
            for cc in (c, k):
                cc["agree"] += ok
            ming_ab = fl in ABNORMAL
            if lab in ABNORMAL:
                for cc in (c, k):
                    cc["ab_label"] += 1
                    cc["ab_hit"] += ok and ming_ab
            if ming_ab:
                for cc in (c, k):
                    cc["ab_ming"] += 1
                    cc["ab_right"] += ok and lab in ABNORMAL
            if not ok:
                lines.append(f"  FLAG  {desc} -> {f.key} {f.value_text} {fl} (ref {f.ref_text or '—'}; {f.ref_source or f.note})")
            elif it.get("critical") and not crit:
                lines.append(f"  CRIT  {desc} -> {f.key} {f.value_text} not marked critical")
            elif crit and not it.get("critical"):
                lines.append(f"  CRIT+ {desc} -> {f.key} {f.value_text} marked critical ({f.critical})")
        for f in extra:
            fl = finding_flag(f)
            if fl in ABNORMAL:
                c["ab_ming"] += 1
                by_fmt[fmt]["ab_ming"] += 1
                lines.append(f"  EXTRA {f.raw_name} {f.value_text} -> {f.key} {fl} (labelled nowhere)")
            else:
                lines.append(f"  extra {f.raw_name} {f.value_text} -> {f.key} {fl}")
            c["extra"] += 1
            c["crit_extra"] += bool(getattr(f, "critical", ""))
        if errors and lines:
            print(f"{row['id']} ({fmt})")
            print("\n".join(lines))
    c["reports"] = len(rows)
    return {"all": c, "by_format": dict(by_fmt)}


def _r(a: int, b: int) -> str:
    return f"{a / b:.3f} ({a}/{b})" if b else "—"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="?", type=Path, default=DEFAULT, help=f"labelled JSONL (default {DEFAULT.name})")
    ap.add_argument("--errors", action="store_true", help="list the disagreements per report")
    ap.add_argument("--with-sex", action="store_true", help="pass each row's sex to the parser (default: the text alone)")
    args = ap.parse_args(argv)
    if not args.path.is_file():
        print(f"no such file: {args.path}", file=sys.stderr)
        return 2
    res = run(args.path, args.with_sex, args.errors)
    c = res["all"]
    print(f"{args.path.name}: {c['reports']} reports, {c['items']} labelled items" + (" (row sex passed)" if args.with_sex else ""))
    print(f"item recall          {_r(c['found'], c['items'])}")
    print(f"flag agreement       {_r(c['agree'], c['found'])}  (on found items)")
    print(f"abnormal recall      {_r(c['ab_hit'], c['ab_label'])}")
    print(f"abnormal precision   {_r(c['ab_right'], c['ab_ming'])}")
    print(f"critical recall      {_r(c['crit_found'], c['crit_label'])}  (+{c['crit_extra']} marked critical, not labelled so)")
    print(f"findings matching no item: {c['extra']}")
    print("format     reports-items  recall  agreement  abn.recall  abn.precision")
    for fmt, k in sorted(res["by_format"].items()):
        print(f"{fmt:9s}  {k['items']:>13d}  {k['found'] / max(k['items'], 1):.3f}  {k['agree'] / max(k['found'], 1):9.3f}"
              f"  {k['ab_hit'] / max(k['ab_label'], 1):10.3f}  {k['ab_right'] / max(k['ab_ming'], 1):13.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
