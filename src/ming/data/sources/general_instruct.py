"""General instructions (Alpaca `instruction`/`input`/`output`, ShareGPT, or our records) -> records as is;
cleaning happens in the shared cleaning step. Rows with an empty output (prompt-only eval rows) are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ming.data.records import to_record
from ming.data.sources._common import Skip, SourceContext, convert_rows, prepare

OPTIONS: dict = {}


def convert(row: dict, ctx: SourceContext) -> Iterator[dict]:
    if "instruction" in row and not str(row.get("output") or "").strip():
        raise Skip("empty_output")
    rec = to_record(row)
    key = row.get("id") or rec["messages"][0]["content"]
    meta = {k: row[k] for k in ("category",) if row.get(k)}
    yield ctx.record(rec["messages"], key=key, meta=meta)


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    yield from convert_rows(paths, ctx, convert)
