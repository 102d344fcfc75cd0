"""Helpers shared by the converters: the source context, row streaming with required fields, skips."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ming.data.rawio import iter_rows
from ming.data.records import ErrorLog, make_record, stable_id
from ming.errors import MingError


class Skip(Exception):
    """Raised by a converter for a row that is valid input but yields nothing (counted as a drop reason)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class SourceContext:
    name: str
    kind: str
    subset: str = ""
    category: str = ""
    options: dict = field(default_factory=dict)
    licence: str = ""
    encoding: str = "auto"
    errors: ErrorLog = field(default_factory=ErrorLog)
    skips: dict = field(default_factory=dict)
    data_dir: Path | None = None
    span: tuple[int, int, int] | None = None  # (first byte, end byte, number of the first line) of a JSONL input
    part: tuple[int, int] | None = None  # (k, n): the k-th of n consecutive slices of a knowledge graph's items

    def part_of(self, items: list) -> list:
        """The slice of `items` this context converts (all of them unless the source is split into parts)."""
        if self.part is None:
            return items
        k, n = self.part
        return items[len(items) * k // n:len(items) * (k + 1) // n]

    def kg_errors(self) -> ErrorLog:
        """Where a loaded knowledge graph reports its rows and bad lines: the first part of a split source
        reports them, the other parts do not (so they are counted once per source, as unsplit)."""
        return self.errors if self.part is None or self.part[0] == 0 else ErrorLog()

    def skip(self, reason: str, n: int = 1) -> None:
        self.skips[reason] = self.skips.get(reason, 0) + n

    def record(self, messages: list[dict], *, key: Any, meta: dict | None = None) -> dict:
        m = {"licence": self.licence, "kind": self.kind}
        m.update(meta or {})
        return make_record(source=self.name, category=self.category, subset=self.subset, messages=messages,
                           meta=m, key=key)


def resolve_options(defaults: dict, given: dict | None, kind: str) -> dict:
    given = dict(given or {})
    given.pop("select", None)  # handled by iter_rows_of
    unknown = set(given) - set(defaults)
    if unknown:
        raise MingError(f"unknown option(s) {sorted(unknown)} for source kind {kind!r}; known: {sorted(defaults)}")
    return {**defaults, **given}


def selected(key: str, select: dict | None) -> bool:
    """`select: {mod: M, rem: R}` keeps rows whose stable hash of the key is R modulo M (a deterministic split of
    one input between two subsets)."""
    if not select:
        return True
    mod, rem = int(select.get("mod", 1)), int(select.get("rem", 0))
    return int(stable_id("select", key, n=8), 16) % mod == rem


def iter_rows_of(paths: Iterable[Path], ctx: SourceContext, required: tuple[str, ...] = (),
                 types: dict[str, type | tuple] | None = None) -> Iterator[tuple[Path, int, dict]]:
    """Rows of all input files with the required fields present and non-empty; others are counted as errors
    with file:line."""

    select = (ctx.options or {}).get("select")
    for path in paths:
        for line_no, row in iter_rows(path, errors=ctx.errors, encoding=ctx.encoding, span=ctx.span):
            missing = [k for k in required if row.get(k) in (None, "", [], {})]
            if missing:
                ctx.errors.error(path, line_no, f"missing field(s) {missing}")
                continue
            bad = [k for k, t in (types or {}).items() if k in row and row[k] is not None
                   and not isinstance(row[k], t)]
            if bad:
                ctx.errors.error(path, line_no, f"field(s) {bad} have the wrong type")
                continue
            if not selected(str(row.get("id") or f"{path.name}:{line_no}"), select):
                continue
            yield path, line_no, row


def convert_rows(paths: Iterable[Path], ctx: SourceContext, convert: Callable[[dict, SourceContext], Iterable[dict]],
                 required: tuple[str, ...] = (), types: dict | None = None) -> Iterator[dict]:
    """Stream rows through `convert(row, ctx)`; `Skip` is counted as a drop, bad values as errors (file:line)."""
    for path, line_no, row in iter_rows_of(paths, ctx, required, types):
        try:
            out = list(convert(row, ctx))
        except Skip as s:
            ctx.skip(s.reason)
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            ctx.errors.error(path, line_no, f"cannot convert row: {exc.__class__.__name__}: {exc}")
            continue
        for rec in out:
            rec["meta"].setdefault("origin", f"{path.parent.name}/{path.name}:{line_no}")
            yield rec


def pick(options: list[str], *key: Any) -> str:
    """A phrasing chosen deterministically from the key (same input, same phrasing, on every machine)."""
    return options[int(stable_id(*key, n=8), 16) % len(options)]


def join_list(items: list[str], sep: str = "、", limit: int = 15) -> str:
    seen: list[str] = []
    for it in items:
        it = str(it).strip()
        if it and it not in seen:
            seen.append(it)
    return sep.join(seen[:limit])


def trim_to_sentence(text: str, min_chars: int = 20) -> str:
    """Cut a text that was truncated upstream (ends with … or mid-sentence) back to its last full sentence."""
    text = text.strip()
    if text.endswith(("…", "...")) or text[-1:] not in "。！？!?.；;）)”\"":
        cut = max(text.rfind(p) for p in "。！？!?；;")
        text = text[:cut + 1] if cut >= min_chars else ""
    return text


def prepare(ctx: SourceContext, defaults: dict) -> None:
    """Check the recipe options of a source against the converter's defaults and fill them in."""
    select = (ctx.options or {}).get("select")
    ctx.options = resolve_options(defaults, ctx.options, ctx.kind)
    ctx.options["select"] = select
