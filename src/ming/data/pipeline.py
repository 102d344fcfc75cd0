"""The per-record work of `ming data build`, in batches, on one core or on all of them, in input order.

A batch of converted records goes through `RecordStage.run`: subset labels and system prompt, cleaning, the exact
hash of the normalised conversation, its MinHash signature and the eval-contamination check. None of that depends
on other records, so batches run in worker processes; what does depend on order — exact and near dedup, first
come first kept — stays in the caller, which gets the results back in submission order (`Workers.map`).
Records cross the process boundary as orjson bytes; each result carries the cleaned record's JSON line, so
serialising happens in the workers too.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import orjson

from ming.data.clean import CleanConfig, Cleaner
from ming.data.dedup import EvalIndex, MinHasher, norm_many, record_hashes, record_text
from ming.data.errorlog import ErrorLog
from ming.data.records import validate_record
from ming.data.sources import get_converter
from ming.data.sources._common import SourceContext

BATCH = 512  # records per task: big enough that the pickling and queueing cost per record is small
SHARD_BYTES = 256 << 20  # a source's files smaller than this are converted in the workers, one file per task


@dataclass
class BatchResult:
    """What one batch left after cleaning: per kept record its id, JSON line, exact hash, signature and the
    eval item it matches (or None); the cleaning counters and the seconds spent per stage."""

    source: str
    n_in: int
    ids: list[str]
    lines: list[bytes]
    exact: np.ndarray
    sigs: np.ndarray
    eval_hits: list[str | None]
    drops: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)


@dataclass
class SourceTask:
    """How a source's records are labelled and cleaned (sent with each of its batches)."""

    source: str
    category: str
    subset: str
    system: str | None
    languages: tuple[str, ...]


@dataclass
class FileResult:
    """One input file converted and run through the stage in a worker: its batches in order, its input
    problems, its converter skips and the seconds its conversion took."""

    batches: list[BatchResult]
    errors: ErrorLog
    skips: dict
    convert_seconds: float


class RecordStage:
    """Clean, hash, sign and eval-check batches of records (stateless between batches)."""

    def __init__(self, clean: CleanConfig, hasher: MinHasher, eval_index: EvalIndex | None):
        self.clean_cfg, self.hasher, self.eval_index = clean, hasher, eval_index

    def run(self, task: SourceTask, payload: bytes) -> BatchResult:
        t = time.perf_counter()
        secs: Counter = Counter()
        recs = orjson.loads(payload)
        t1 = time.perf_counter()
        secs["transfer"] += t1 - t
        cleaner = Cleaner(self.clean_cfg)
        kept = []
        for rec in recs:
            rec["category"], rec["subset"] = task.category, task.subset
            if task.system and rec["messages"][0]["role"] != "system":
                rec["messages"] = [{"role": "system", "content": task.system}] + rec["messages"]
            rec = cleaner.clean(rec, languages=task.languages)
            if rec is not None:
                kept.append(rec)
        t2 = time.perf_counter()
        secs["clean"] += t2 - t1
        exact = np.array(record_hashes(kept), dtype=np.uint64)
        t3 = time.perf_counter()
        secs["exact_hash"] += t3 - t2
        sigs = self.hasher.signatures(norm_many([record_text(r) for r in kept]), normalized=True)
        t4 = time.perf_counter()
        secs["minhash"] += t4 - t3
        hits = self.eval_index.match_batch(kept) if self.eval_index is not None else [None] * len(kept)
        t5 = time.perf_counter()
        secs["decontaminate"] += t5 - t4
        lines = [orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in kept]
        secs["serialise"] += time.perf_counter() - t5
        return BatchResult(task.source, len(recs), [r["id"] for r in kept], lines, exact, sigs, hits,
                           cleaner.drops, cleaner.pii, secs)

    def convert_run(self, kind: str, ctx: SourceContext, path, task: SourceTask) -> "FileResult":
        """Convert one input file of a source (with a fresh context: the caller merges its problems in file
        order) and run its records through `run`."""
        t = time.perf_counter()
        recs = list(get_converter(kind).iter_records([path], ctx))
        secs = time.perf_counter() - t
        results = [self.run(task, b) for b in batches(recs)]
        return FileResult(results, ctx.errors, dict(ctx.skips), secs)

    def audit(self, lines: list[bytes], name: str, first_line: int) -> dict:
        """Re-check written lines: schema, exact hashes (for the caller's duplicate count), eval contamination;
        deliberate upsampling repeats are counted apart."""
        n = invalid = repeats = 0
        examples: list[str] = []
        fresh = []
        for line_no, line in enumerate(lines, first_line):
            n += 1
            rec = orjson.loads(line)
            problems = validate_record(rec, training=True, require_category=True)
            if problems:
                invalid += 1
                if len(examples) < 10:
                    examples.append(f"{name}:{line_no}: {problems[0]}")
            if rec.get("meta", {}).get("repeat"):
                repeats += 1
                continue
            fresh.append(rec)
        hashes = np.array(record_hashes(fresh), dtype=np.uint64)
        contaminated = (sum(1 for h in self.eval_index.match_batch(fresh) if h) if self.eval_index is not None
                        else 0)
        return {"records": n, "invalid": invalid, "repeats": repeats, "examples": examples, "hashes": hashes,
                "contaminated": contaminated}


_STAGE: RecordStage | None = None


def _init(stage: RecordStage) -> None:
    global _STAGE
    _STAGE = stage


def _call(method: str, args: tuple):
    return getattr(_STAGE, method)(*args)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class Workers:
    """Runs RecordStage methods in `n` processes (or in this one when n == 1), results in submission order,
    at most a few batches in flight so that memory does not grow with the input."""

    def __init__(self, stage: RecordStage, n: int):
        self.stage, self.n = stage, max(1, int(n))
        self._pool = None
        if self.n > 1:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
            self._pool = ctx.Pool(self.n, initializer=_init, initargs=(stage,))

    def map(self, method: str, args: Iterable[tuple]) -> Iterator:
        if self._pool is None:
            fn: Callable = getattr(self.stage, method)
            for a in args:
                yield fn(*a)
            return
        pending: deque = deque()
        for a in args:
            pending.append(self._pool.apply_async(_call, (method, a)))
            if len(pending) >= 2 * self.n + 2:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batches(records: Iterable[dict], size: int = BATCH) -> Iterator[bytes]:
    """orjson bytes of consecutive lists of `size` records."""
    buf: list[dict] = []
    for rec in records:
        buf.append(rec)
        if len(buf) >= size:
            yield orjson.dumps(buf)
            buf = []
    if buf:
        yield orjson.dumps(buf)


def line_batches(path, size: int = 2048) -> Iterator[tuple[list[bytes], int]]:
    """(lines, number of the first line) of a file, `size` lines at a time."""
    with open(path, "rb") as fh:
        buf: list[bytes] = []
        first = 1
        for line_no, line in enumerate(fh, 1):
            buf.append(line)
            if len(buf) >= size:
                yield buf, first
                buf, first = [], line_no + 1
        if buf:
            yield buf, first
