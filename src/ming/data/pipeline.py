"""The per-record work of `ming data build`, in shards, on one core or on all of them, in input order.

The input is cut into shards (`Shard`): a piece of ~`SPAN_BYTES` of a JSONL file (whole lines, with the number of
its first line), a part of a knowledge graph's diseases, or a whole file of another format. A shard is read and
converted where it runs, and its records go through `RecordStage.run_records` in batches: subset labels and
system prompt, cleaning, the exact hash of the normalised conversation, its MinHash band keys and the
eval-contamination check. None of that depends on other records, so shards run in worker processes; what does
depend on order — exact and near dedup, first come first kept — stays in the caller, which gets the results back
in submission order (`Workers.map`) and decides a whole batch with a few numpy operations. What crosses the
process boundary is small: the shard's description going out, and per kept record its spill line (`spill_line`:
exact hash and CRC-32 ahead of the JSON line), 8 bytes of exact hash and 8 bytes per band coming back. The same
workers draw the strata of the mix (`RecordStage.select`) and audit the written lines (`RecordStage.audit`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import orjson

from ming.data.clean import CleanConfig, Cleaner, char_flags
from ming.data.dedup import EvalIndex, MinHasher, band_sums, prepare_tables, record_features, record_hashes
from ming.data.errorlog import ErrorLog
from ming.data.mix import select_stratum, spill_head, spill_line
from ming.data.rawio import jsonl_spans, splittable
from ming.data.recipe import SourceSpec, SubsetSpec
from ming.data.records import validate_record
from ming.data.report import MixStats
from ming.data.sources import get_converter
from ming.data.sources._common import SourceContext
from ming.data.sources._kg import use_disk_cache
from ming.errors import MingError

BATCH = 512  # records per batch of the per-record stages (numpy operations over a whole batch)
SPAN_BYTES = 2 << 20  # a JSONL input is read in pieces of this size, one per task
KG_PARTS = 8  # a knowledge-graph source is converted in this many parts, one per task


@dataclass
class BatchResult:
    """What one batch left after cleaning: per kept record its id, JSON line, exact hash, signature and the
    eval item it matches (or None); the cleaning counters and the seconds spent per stage."""

    source: str
    n_in: int
    ids: list[str]
    lines: list[bytes]
    exact: np.ndarray
    sigs: np.ndarray | None  # (records, num_perm) signatures, or None when `keys` holds the band keys
    eval_hits: list[str | None]
    drops: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    keys: np.ndarray | None = None  # (records, bands) near-dedup band keys (`band_sums`)


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
    """One shard converted and run through the stage: its batches in order, its input problems, its converter
    skips and the CPU seconds its reading and conversion took; `source` / `last`: the index of its source in
    the recipe and whether it is the source's last shard."""

    batches: list[BatchResult]
    errors: ErrorLog
    skips: dict
    convert_seconds: float
    source: int = 0
    last: bool = True


@dataclass
class Shard:
    """A piece of a source's input converted by one task: a file, a span of a JSONL file (`jsonl_spans`) or a
    part (k, n) of a knowledge graph; `source` (its index in the recipe) and `last` say where it belongs."""

    source: int
    last: bool
    subset: SubsetSpec
    spec: SourceSpec
    task: SourceTask
    path: Path | None
    data_dir: Path | None
    span: tuple[int, int, int] | None = None
    part: tuple[int, int] | None = None


def make_context(subset: SubsetSpec, spec: SourceSpec, data_dir: Path | None) -> SourceContext:
    return SourceContext(name=spec.name, kind=spec.kind, subset=subset.name, category=subset.category,
                         options=dict(spec.options), licence=spec.licence, encoding=spec.encoding, data_dir=data_dir)


def source_shards(source: int, subset: SubsetSpec, spec: SourceSpec, task: SourceTask, paths: list[Path],
                  data_dir: Path | None, span_bytes: int | None = None, kg_parts: int | None = None
                  ) -> Iterator[Shard]:
    """The shards of one source, in input order: JSONL files in spans, knowledge-graph folders in parts (for
    the converters that support it), other files whole. A source without inputs is one empty shard."""
    span_bytes = span_bytes or SPAN_BYTES
    kg_parts = kg_parts or KG_PARTS
    pieces: list[tuple] = []
    kg_split = getattr(get_converter(spec.kind), "KG_PARTS", False)
    graphs = sum(1 for p in paths if p.is_dir()) if kg_split else 0
    for p in paths:
        if p.is_dir() and kg_split and graphs > 1:
            pieces.append((p, None, None))  # several graphs: one task each, so each is loaded in one process only
        elif p.is_dir() and kg_split:
            pieces += [(p, None, (k, kg_parts)) for k in range(kg_parts)]
        elif splittable(p) and p.stat().st_size > span_bytes:
            pieces += [(p, sp, None) for sp in jsonl_spans(p, span_bytes)]
        else:
            pieces.append((p, None, None))
    if not pieces:
        pieces.append((None, None, None))
    for i, (p, sp, part) in enumerate(pieces):
        yield Shard(source, i == len(pieces) - 1, subset, spec, task, p, data_dir, sp, part)


def _first_perms(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


class RecordStage:
    """Clean, hash, sign and eval-check batches of records (stateless between batches)."""

    def __init__(self, clean: CleanConfig, hasher: MinHasher | None, eval_index: EvalIndex | None,
                 bands: tuple[int, int] | None = None, shared: Path | None = None, kg_cache: Path | None = None):
        """`bands`: (bands, rows) of the near-dedup index: results carry band keys instead of signatures.
        `shared`: a file that `share` writes later: a copy of this stage made before that (a worker) takes the
        hasher, eval index and bands from it when it first needs them. `kg_cache`: a folder where the
        knowledge graphs parsed by `convert_shard` are kept for the build's other processes (`use_disk_cache`)."""
        self.clean_cfg, self.hasher, self.eval_index, self.bands = clean, hasher, eval_index, bands
        self.shared, self.kg_cache = shared, kg_cache
        self._owner = os.getpid()  # the process that will write `shared`

    def share(self, hasher: MinHasher, eval_index: EvalIndex | None, bands: tuple[int, int] | None,
              to_file: bool) -> None:
        """Set the hasher, eval index and bands here and, with `to_file`, for the copies of this stage in the
        workers (written to `shared` at once: a worker never reads half a file)."""
        path, self.shared = self.shared, None
        self.hasher, self.eval_index, self.bands = hasher, eval_index, bands
        if to_file and path is not None:
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                pickle.dump((hasher, eval_index, bands), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)

    def _ready(self) -> None:
        """In a worker started before `share`: wait for the shared file and take what it holds."""
        if self.shared is None:
            return
        while not self.shared.exists():
            if os.getppid() != self._owner:  # the build that would write it is gone: do not wait for ever
                raise MingError(f"the build process ended before it wrote {self.shared}; run the build again")
            time.sleep(0.005)
        with open(self.shared, "rb") as fh:
            self.hasher, self.eval_index, self.bands = pickle.load(fh)
        self.shared = None

    def run(self, task: SourceTask, payload: bytes) -> BatchResult:
        t = time.process_time()
        recs = orjson.loads(payload)
        res = self.run_records(task, recs)
        res.seconds["transfer"] += time.process_time() - t - sum(res.seconds.values())
        return res

    def run_records(self, task: SourceTask, recs: list[dict]) -> BatchResult:
        self._ready()
        secs: Counter = Counter()
        t1 = time.process_time()
        cleaner = Cleaner(self.clean_cfg)
        for rec in recs:
            rec["category"], rec["subset"] = task.category, task.subset
            if task.system and rec["messages"][0]["role"] != "system":
                rec["messages"] = [{"role": "system", "content": task.system}] + rec["messages"]
        kept = cleaner.clean_many(recs, languages=task.languages)
        t2 = time.process_time()
        secs["clean"] += t2 - t1
        hashes, texts, turns = record_features(kept, turns=True)
        exact = np.array(hashes, dtype=np.uint64)
        t3 = time.process_time()
        secs["exact_hash"] += t3 - t2  # the normalisation that exact hash and MinHash share
        keys = None
        if self.bands is not None:  # only the permutations the bands use (120 of 128 at the defaults)
            bands, rows = self.bands
            sigs = self.hasher.signatures(texts, normalized=True, perms=_first_perms(bands * rows))
            keys, sigs = band_sums(sigs, bands, rows), None
        else:
            sigs = self.hasher.signatures(texts, normalized=True)
        t4 = time.process_time()
        secs["minhash"] += t4 - t3
        hits = (self.eval_index.match_batch(kept, turns) if self.eval_index is not None
                else [None] * len(kept))
        t5 = time.process_time()
        secs["decontaminate"] += t5 - t4
        lines = [spill_line(h, orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE)) for h, r in zip(hashes, kept)]
        secs["serialise"] += time.process_time() - t5
        return BatchResult(task.source, len(recs), [r["id"] for r in kept], lines, exact, sigs, hits,
                           cleaner.drops, cleaner.pii, secs, keys)

    def convert_shard(self, sh: Shard) -> FileResult:
        """Read and convert one shard (with a fresh context: the caller merges its problems in order) and run
        its records through `run_records`, `BATCH` at a time."""
        t = time.process_time()
        use_disk_cache(self.kg_cache)
        try:
            ctx = make_context(sh.subset, sh.spec, sh.data_dir)
            ctx.span, ctx.part = sh.span, sh.part
            recs = iter(get_converter(sh.spec.kind).iter_records([sh.path], ctx) if sh.path is not None else ())
            secs = 0.0
            results = []
            while True:  # a batch at a time: a whole graph's records are never held at once
                batch = list(islice(recs, BATCH))
                secs += time.process_time() - t
                if not batch:
                    break
                results.append(self.run_records(sh.task, batch))
                t = time.process_time()
        finally:
            use_disk_cache(None)  # the folder goes with the build
        return FileResult(results, ctx.errors, dict(ctx.skips), secs, sh.source, sh.last)

    def audit(self, lines: list[bytes], heads: list[bytes], name: str, first_line: int, split: str) -> dict:
        """Re-check written lines: schema, exact hashes (for the caller's duplicate count), eval contamination;
        deliberate upsampling repeats are counted apart. A line whose spill head (`heads`, b"" for none) still
        matches it is the very line pass 1 hashed and eval-checked: its hash is the head's and it is clean (pass
        1 kept it); every other line is hashed and eval-checked again here. Also the mix statistics of the
        lines (`MixStats`, as records of `split`)."""
        self._ready()
        t = time.process_time()
        n = invalid = repeats = 0
        examples: list[str] = []
        carried: list[int] = []
        fresh = []
        stats = MixStats()
        for line_no, (line, head) in enumerate(zip(lines, heads), first_line):
            n += 1
            rec = orjson.loads(line)
            stats.add(rec, split)
            problems = validate_record(rec, training=True, require_category=True)
            if problems:
                invalid += 1
                if len(examples) < 10:
                    examples.append(f"{name}:{line_no}: {problems[0]}")
            if rec.get("meta", {}).get("repeat"):
                repeats += 1
                continue
            h = spill_head(head, line) if head else None
            if h is None:
                fresh.append(rec)
            else:
                carried.append(h)
        hashes = np.array(carried + record_hashes(fresh), dtype=np.uint64)
        contaminated = (sum(1 for h in self.eval_index.match_batch(fresh) if h) if self.eval_index is not None
                        else 0)
        return {"records": n, "invalid": invalid, "repeats": repeats, "examples": examples, "hashes": hashes,
                "contaminated": contaminated, "stats": stats, "cpu_seconds": time.process_time() - t}

    def select(self, *args) -> tuple[str, float]:
        """One stratum of the mix (`select_stratum`), where the stage runs: (its file, CPU seconds)."""
        t = time.process_time()
        return select_stratum(*args), time.process_time() - t


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


WORKER_TIMEOUT = 900  # seconds one task may take before the build gives up on its worker


class Workers:
    """Runs RecordStage methods in `n` processes (or in this one when n == 1), results in submission order,
    at most a few batches in flight so that memory does not grow with the input."""

    def __init__(self, stage: RecordStage, n: int):
        self.stage, self.n = stage, max(1, int(n))
        self._pool = None
        if self.n > 1:
            char_flags()  # the cleaner's and the normalisation's tables, built once here rather than in every
            prepare_tables()  # worker
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
            self._pool = ctx.Pool(self.n, initializer=_init, initargs=(stage,))

    def map(self, method: str, args: Iterable[tuple]) -> Iterator:
        """The results of `method` on each argument tuple, in order. With worker processes the first tasks are
        submitted at once (they run while the caller does other work before taking the results); in this
        process each runs when its result is taken."""
        if self._pool is None:
            fn: Callable = getattr(self.stage, method)
            return (fn(*a) for a in args)
        args = iter(args)
        pending: deque = deque()
        for a in args:
            pending.append(self._pool.apply_async(_call, (method, a)))
            if len(pending) >= 2 * self.n + 1:
                break
        return self._results(method, args, pending)

    def _results(self, method: str, args: Iterator[tuple], pending: deque) -> Iterator:
        for a in args:
            pending.append(self._pool.apply_async(_call, (method, a)))
            if len(pending) >= 2 * self.n + 2:
                yield self._get(method, pending.popleft())
        while pending:
            yield self._get(method, pending.popleft())

    def _get(self, method: str, res):
        """A task's result; a worker silent for WORKER_TIMEOUT seconds is an error, not a build that hangs."""
        try:
            return res.get(WORKER_TIMEOUT)
        except mp.TimeoutError:
            raise MingError(f"a data worker gave no {method} result for {WORKER_TIMEOUT} s (a shard takes seconds); "
                            "the build stopped. Run it again with --workers 1, and report this with the recipe") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
