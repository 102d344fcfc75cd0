"""`ming report FILE [--json]`: parse a lab / physical-exam report into graded findings, no model."""

from __future__ import annotations

import argparse
import json
import re
import sys

from ming.errors import MingError
from ming.safety.report import critical_notice, findings_table, is_abnormal, parse_report


CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")  # never in a text report (tabs, newlines, ESC are)


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text,
        description="Parse a pasted lab / physical-exam report (MING showcase format, 'name value unit (range)' "
                    "tables, or free text such as 血压130/85，空腹血糖6.5), normalise names and units, and grade each "
                    "value against the printed range, else a curated adult range with its source. No model is used.")
    p.add_argument("file", help="report text file (UTF-8); '-' reads stdin")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per finding: name, value, unit, reference_range, status (high/low/normal/abnormal), ...")
    p.add_argument("--sex", choices=["male", "female"], default=None,
                   help="sex for sex-specific ranges (Hb, creatinine, uric acid...); default: read from the report "
                        "(性别：男/女), else the men+women combined range")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown (as chat and the web page show it)")
    p.set_defaults(func=run)
    return p


def read_text(name: str) -> str:
    """The UTF-8 text of file `name` ('-' = stdin, read as bytes and checked the same way): a clear error for
    a folder, a missing or unreadable file, bytes that are not UTF-8 text (binary) and an empty input."""
    where = "stdin" if name == "-" else name
    try:
        if name == "-":
            stdin = getattr(sys.stdin, "buffer", None)
            raw = stdin.read() if stdin is not None else sys.stdin.read().encode("utf-8", "surrogateescape")
        else:
            with open(name, "rb") as f:
                raw = f.read()
    except FileNotFoundError:
        raise MingError(f"no such file: {name}; pass a UTF-8 text file with the report, or '-' for stdin") from None
    except IsADirectoryError:
        raise MingError(f"{name} is a folder; pass one report text file, or '-' for stdin") from None
    except OSError as exc:
        raise MingError(f"cannot read {name} ({exc.strerror}); check the path and its permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MingError(f"{where} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); if it is "
                        "GBK text convert it with iconv -f gbk -t utf-8, a binary file cannot be read") from None
    binary = CONTROL.search(text)
    if binary:
        raise MingError(f"{where} is binary, not a text report (control byte 0x{ord(binary.group()):02x} at "
                        f"character {binary.start()}); pass the report as UTF-8 text")
    if not text.strip():
        raise MingError(f"{where} is empty; pass a report with lines such as '谷丙转氨酶 35 U/L 9-50'")
    return text


def run(args) -> int:
    text = read_text(args.file)
    findings = parse_report(text, sex=args.sex)
    if not findings:
        raise MingError(f"no test results recognised in {args.file} ({len(text)} characters); expected lines such as "
                        f"'谷丙转氨酶 35 U/L 9-50' or '甘油三酯 = [1.75] ↑'; the known names are listed in "
                        f"ming/safety/tables/reference_ranges.yaml")
    if args.json:
        for f in findings:
            print(json.dumps(f.to_dict(), ensure_ascii=False))
        return 0
    if critical_notice(findings):
        print(critical_notice(findings) + "\n")
    print(findings_table(findings, markdown=args.markdown))
    ab = [f for f in findings if is_abnormal(f)]
    ungraded = [f for f in findings if f.status == "ungraded"]
    print(f"\n{len(findings)} 项，异常 {len(ab)} 项" + (f"：{'、'.join(f.name for f in ab)}" if ab else "")
          + (f"；未判断 {len(ungraded)} 项：{'、'.join(f.name for f in ungraded)}" if ungraded else ""))
    return 0
