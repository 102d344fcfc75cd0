"""Streaming readers for raw input files: JSONL, JSON arrays and CSV, UTF-8 or GB18030/GBK.

Every row comes out as `(line_number, dict)`. Problems are counted in an ErrorLog with file:line and the row is
skipped; with `encoding="auto"` a line that is not UTF-8 but decodes as GB18030 is kept and counted as a warning.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

import orjson

from ming.data.errorlog import ErrorLog
from ming.errors import MingError

ENCODINGS = ("auto", "utf-8", "gb18030")


def _decode(raw: bytes, encoding: str) -> tuple[str | None, str | None]:
    """(text, warning) or (None, error)."""
    if encoding in ("auto", "utf-8"):
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError:
            if encoding == "utf-8":
                return None, "not valid UTF-8 (set encoding: gb18030 or auto for GBK files)"
        try:
            return raw.decode("gb18030"), "not UTF-8; decoded as GB18030/GBK"
        except UnicodeDecodeError:
            return None, "undecodable bytes (neither UTF-8 nor GB18030)"
    try:
        return raw.decode(encoding), None
    except (UnicodeDecodeError, LookupError) as exc:
        return None, f"cannot decode as {encoding}: {exc.__class__.__name__}"


def json_problem(exc: json.JSONDecodeError, text: str) -> str:
    """A JSON error in words, with the column counted on the line: a line cut off before its object closes
    is "truncated JSON"."""
    line = text.rstrip()
    if exc.pos >= len(line):
        return f"malformed JSON (truncated JSON: the line ends after column {len(line)} before it is closed)"
    msg = exc.msg[:-3] if exc.msg.endswith(" at") else exc.msg  # "Invalid control character at" + "at column"
    return f"malformed JSON ({msg} at column {exc.pos + 1})"


def jsonl_spans(path: str | Path, size: int) -> list[tuple[int, int, int]]:
    """A JSONL file cut into consecutive pieces of about `size` bytes that end at a line end: (first byte,
    end byte, number of the first line) each, for `iter_jsonl(span=...)`."""
    out: list[tuple[int, int, int]] = []
    start = 0
    with open(path, "rb") as fh:
        for line, block in _line_blocks(fh, 1, None, size):
            out.append((start, start + len(block), line))
            start += len(block)
    return out or [(0, 0, 1)]


READ_BLOCK = 4 << 20  # bytes read at a time (whole lines) by `iter_jsonl`


def _line_blocks(fh, first: int, end: int | None, size: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, bytes) of consecutive blocks of about `size` bytes (default `READ_BLOCK`) of
    whole lines, up to byte `end` (None: the end of the file), from the current position of `fh`."""
    size = size or READ_BLOCK
    left = None if end is None else end - fh.tell()
    while left is None or left > 0:
        block = fh.read(size if left is None else min(size, left))
        if not block:
            return
        if not block.endswith(b"\n") and (left is None or len(block) < left):
            block += fh.readline() if left is None else fh.readline(left - len(block))
        if left is not None:
            left -= len(block)
        yield first, block
        first += block.count(b"\n")


def iter_jsonl(path: str | Path, *, errors: ErrorLog, encoding: str = "auto",
               span: tuple[int, int, int] | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a JSONL file, or of the piece `span` (see `jsonl_spans`) of it, with their line numbers."""
    path = Path(path)
    key = str(path)
    fast = encoding in ("auto", "utf-8")
    with open(path, "rb") as fh:
        first = 1
        if span is not None:
            fh.seek(span[0])
            first = span[2]
        for line0, block in _line_blocks(fh, first, None if span is None else span[1]):
            lines = block.split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            if line0 == 1 and lines and lines[0].startswith(b"\xef\xbb\xbf"):
                lines[0] = lines[0][3:]
            blank = [i for i, raw in enumerate(lines) if not raw or raw.isspace()]
            errors.rows[key] += len(lines) - len(blank)
            if blank:
                gone = set(blank)
                numbered = [(line0 + i, raw) for i, raw in enumerate(lines) if i not in gone]
            else:
                numbered = list(enumerate(lines, line0))
            for line_no, raw in numbered:
                if fast:
                    try:  # the fast path: valid UTF-8 JSON; anything else takes the path below (same messages)
                        obj = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        if type(obj) is dict:
                            yield line_no, obj
                            continue
                yield from _slow_row(path, line_no, raw, encoding, errors)


def _slow_row(path: Path, line_no: int, raw: bytes, encoding: str, errors: ErrorLog) -> Iterator[tuple[int, dict]]:
    """A line the fast path did not take: decoded as `encoding` says, parsed, or reported with its problem."""
    text, problem = _decode(raw, encoding)
    if text is None:
        errors.error(path, line_no, problem or "decode error")
        return
    if problem:
        errors.warn(path, line_no, problem)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.error(path, line_no, json_problem(exc, text))
        return
    if not isinstance(obj, dict):
        errors.error(path, line_no, f"line is a JSON {type(obj).__name__}, expected an object")
        return
    yield line_no, obj


def iter_json_array(path: str | Path, *, errors: ErrorLog, encoding: str = "auto") -> Iterator[tuple[int, dict]]:
    """A `.json` file holding a list of objects (Alpaca/ShareGPT releases). Loaded whole: use JSONL for big data.
    The 'line' reported is the item number (1-based)."""
    path = Path(path)
    raw = path.read_bytes()
    text, problem = _decode(raw, encoding)
    if text is None:
        errors.error(path, 1, problem or "decode error")
        return
    if problem:
        errors.warn(path, 1, problem)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.error(path, exc.lineno, f"malformed JSON ({exc.msg}); the whole file was skipped")
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        errors.error(path, 1, f"top level is a JSON {type(data).__name__}, expected a list of objects")
        return
    for i, obj in enumerate(data, 1):
        errors.rows[str(path)] += 1
        if not isinstance(obj, dict):
            errors.error(path, i, f"item is a JSON {type(obj).__name__}, expected an object")
            continue
        yield i, obj


def iter_csv(path: str | Path, *, errors: ErrorLog, encoding: str = "auto") -> Iterator[tuple[int, dict]]:
    """CSV with a header row. With `auto`, UTF-8 is tried first and GB18030 (a superset of GBK) second; the
    encoding is decided for the whole file (quoted fields may span lines)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    text, problem = _decode(raw, encoding)
    if text is None:
        # find the first bad line to report
        bad = 1
        for bad, line in enumerate(raw.split(b"\n"), 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                break
        errors.rows[str(path)] += 1
        errors.error(path, bad, (problem or "decode error") + "; the whole file was skipped")
        return
    if problem:
        errors.warn(path, 1, problem + " (whole file)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        errors.error(path, 1, "empty CSV (no header row)")
        return
    for row in reader:
        errors.rows[str(path)] += 1
        line_no = reader.line_num
        if None in row:  # more cells than header columns
            errors.error(path, line_no, f"row has {len(reader.fieldnames) + len(row[None])} cells, header has "
                                        f"{len(reader.fieldnames)}")
            continue
        yield line_no, {k.strip(): (v if v is not None else "") for k, v in row.items()}


def iter_rows(path: str | Path, *, errors: ErrorLog, encoding: str = "auto",
              span: tuple[int, int, int] | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a .jsonl/.json/.csv file, by extension (anything else is read as JSONL); `span`: only that piece
    of a JSONL file (`jsonl_spans`)."""
    path = Path(path)
    if not path.is_file():
        raise MingError(f"input file not found: {path}; check the recipe's paths or MING_DATA_DIR "
                        "(`ming env` shows where ../shared/data is looked for)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from iter_csv(path, errors=errors, encoding=encoding)
    elif suffix == ".json":
        yield from iter_json_array(path, errors=errors, encoding=encoding)
    else:
        yield from iter_jsonl(path, errors=errors, encoding=encoding, span=span)


def splittable(path: Path) -> bool:
    """Whether `iter_rows` can read the file in pieces (JSONL; JSON arrays and CSV are read whole)."""
    return path.is_file() and path.suffix.lower() not in (".csv", ".json")
