"""Mixing: how many records each category, subset and source gets, and seeded streaming selection.

Planning (`plan_mix`): category shares are hard targets (the sum of their subsets' weights); `total: auto` is the
largest total whose category shares the available data (times `max_upsample`) can meet. Inside a category, each
subset gets its weight's share; a subset with too little data is capped at what it has and the rest goes to its
siblings in proportion to their weights (water-filling). Inside a subset, sources share in proportion to what
they have times their `weight`, within their caps.

Selection (`select_stream`) is Knuth's selection sampling (Algorithm S): it streams a file once and keeps exactly
k of n records, uniformly, seeded, in O(1) memory; k > n repeats whole passes (upsampling).
Shuffling (`BucketShuffler`) spreads records over temporary bucket files and shuffles one bucket at a time, so
memory is bounded by the bucket size, not the mix size.

A spill line (`spill_line`) is a kept record's JSON line after a fixed-size head that carries what pass 1 found
for it: its exact hash and the CRC-32 of the JSON line, so that the audit can tell a line that reached the output
unchanged (and reuse pass 1's hash and eval check) from one that did not. Each source's spill is one stratum of
the mix: `select_stratum` draws from it with the stratum's own seeded generator, decides the train/dev split
and rewrites upsampling repeats, so strata can be drawn in parallel.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson


def water_fill(total: int, weights: dict[str, float], limits: dict[str, float]) -> dict[str, int]:
    """Split `total` over keys in proportion to weights, never exceeding limits; what a capped key cannot take
    goes to the others. Integer result (largest remainder); sums to min(total, sum of floor(limits))."""
    limits = {k: math.floor(v) for k, v in limits.items()}
    alloc = {k: 0.0 for k in weights}
    free = {k for k in weights if weights[k] > 0 and limits.get(k, 0) > 0}
    remaining = float(min(total, sum(limits.get(k, 0) for k in free)))
    while free and remaining > 1e-9:
        wsum = sum(weights[k] for k in free)
        capped = {k for k in free if alloc[k] + remaining * weights[k] / wsum >= limits[k]}
        if not capped:
            for k in free:
                alloc[k] += remaining * weights[k] / wsum
            remaining = 0
            break
        for k in capped:
            remaining -= limits[k] - alloc[k]
            alloc[k] = limits[k]
        free -= capped
    # integer rounding, largest remainder, respecting limits
    target = round(sum(alloc.values()))
    out = {k: math.floor(v) for k, v in alloc.items()}
    order = sorted(alloc, key=lambda k: (alloc[k] - out[k]), reverse=True)
    i = 0
    while sum(out.values()) < target and i < len(order) * 2:
        k = order[i % len(order)]
        if out[k] < limits.get(k, 0):
            out[k] += 1
        i += 1
    return out


@dataclass
class SubsetPlan:
    name: str
    category: str
    weight: float
    share: float  # of the whole mix, from the weights
    available: int
    capacity: int  # available * max_upsample
    nominal: int = 0  # share * total, before redistribution
    planned: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass
class MixPlan:
    total: int
    auto: bool
    binding: str  # the category that limits an auto total
    categories: dict[str, dict]
    subsets: dict[str, SubsetPlan]

    def to_dict(self) -> dict:
        return {"total": self.total, "auto": self.auto, "binding_category": self.binding,
                "categories": self.categories,
                "subsets": {k: vars(v) for k, v in self.subsets.items()}}


def plan_mix(recipe, available: dict[str, dict[str, int]]) -> MixPlan:
    """`available[subset][source]` = records left after cleaning and dedup (before caps)."""
    wsum = sum(s.weight for s in recipe.subsets)
    cat_w = recipe.category_weights()
    caps = {s.name: {src.name: min(available.get(s.name, {}).get(src.name, 0),
                                   src.cap if src.cap is not None else 10**15) for src in s.sources}
            for s in recipe.subsets}
    subsets = {s.name: SubsetPlan(s.name, s.category, s.weight, s.weight / wsum, sum(caps[s.name].values()),
                                  math.floor(sum(caps[s.name].values()) * s.max_upsample), note=s.note)
               for s in recipe.subsets}
    cat_capacity = {c: sum(p.capacity for p in subsets.values() if p.category == c) for c in cat_w}
    binding = min(cat_w, key=lambda c: cat_capacity[c] / (cat_w[c] / wsum))
    if recipe.total == "auto":
        total = math.floor(min(cat_capacity[c] / (cat_w[c] / wsum) for c in cat_w))
    else:
        total = int(recipe.total)
    cat_targets = water_fill(total, {c: cat_w[c] for c in cat_w}, {c: 10**15 for c in cat_w})
    categories = {}
    for c in cat_w:
        members = [p for p in subsets.values() if p.category == c]
        got = water_fill(cat_targets[c], {p.name: p.weight for p in members}, {p.name: p.capacity for p in members})
        for p in members:
            p.nominal = round(total * p.share)
            p.planned = got[p.name]
        categories[c] = {"weight": cat_w[c], "share": cat_w[c] / wsum, "target": cat_targets[c],
                         "planned": sum(got.values()), "capacity": cat_capacity[c]}
    for s in recipe.subsets:
        p = subsets[s.name]
        srcs = caps[s.name]
        limits = {k: v * s.max_upsample for k, v in srcs.items()}
        pref = {src.name: max(srcs[src.name], 1e-9) * src.weight for src in s.sources}
        p.sources = water_fill(p.planned, pref, limits)
    return MixPlan(total=total, auto=recipe.total == "auto", binding=binding, categories=categories,
                   subsets=subsets)


def select_stream(lines: Iterator[bytes], n: int, k: int, rng: random.Random) -> Iterator[tuple[int, bytes]]:
    """Yield (pass, line) for k lines out of the n streamed (Algorithm S; k > n: whole passes first).

    `lines` must be re-iterable only in the sense that the caller passes a fresh iterator per pass via
    `select_file`; this function handles one pass choosing `k` of `n`."""
    chosen = 0
    for seen, line in enumerate(lines):
        if chosen >= k:
            break
        if rng.random() * (n - seen) < (k - chosen):
            chosen += 1
            yield 0, line


def select_file(path: Path, n: int, k: int, rng: random.Random) -> Iterator[tuple[int, bytes]]:
    """k records from a JSONL file of n records: full passes for each whole multiple, then a sample."""
    if n <= 0 or k <= 0:
        return
    full, rest = divmod(k, n)
    for rep in range(full):
        with open(path, "rb") as fh:
            for line in fh:
                yield rep, line
    if rest:
        with open(path, "rb") as fh:
            for _, line in select_stream(fh, n, rest, rng):
                yield full, line


class BucketShuffler:
    """Scatter records into `n_buckets` temp files at random, then emit bucket by bucket, each shuffled."""

    def __init__(self, workdir: Path, n_buckets: int, rng: random.Random):
        self.workdir, self.n, self.rng = workdir, max(1, n_buckets), rng
        workdir.mkdir(parents=True, exist_ok=True)
        self._fhs = [open(workdir / f"bucket-{i:04d}.jsonl", "wb") for i in range(self.n)]

    def add(self, line: bytes) -> None:
        """A JSON line (bytes; str is encoded as UTF-8)."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self._fhs[self.rng.randrange(self.n)].write(line if line.endswith(b"\n") else line + b"\n")

    def add_many(self, lines: list[bytes]) -> None:
        """`add` of each line (bytes) in turn, the buckets drawn for all of them at once (`randbelow_many`)."""
        fhs = self._fhs
        for line, b in zip(lines, randbelow_many(self.rng, self.n, len(lines)).tolist()):
            fhs[b].write(line if line.endswith(b"\n") else line + b"\n")

    def buckets(self) -> Iterator[list[bytes]]:
        """The lines, bucket by bucket, each bucket shuffled (what iterating yields, a bucket at a time)."""
        for fh in self._fhs:
            fh.close()
        for i in range(self.n):
            p = self.workdir / f"bucket-{i:04d}.jsonl"
            with open(p, "rb") as fh:
                lines = fh.readlines()
            self.rng.shuffle(lines)
            yield lines
            p.unlink()

    def __iter__(self) -> Iterator[bytes]:
        for lines in self.buckets():
            yield from lines


def randbelow_many(rng: random.Random, n: int, count: int) -> np.ndarray:
    """`[rng.randrange(n) for _ in range(count)]` as an array, drawn with numpy, and `rng` left in the state those
    calls leave it in. Python's `randrange(n)` takes a 32-bit output of its Mersenne Twister shifted down to
    n.bit_length() bits and draws again while the value is >= n; numpy's MT19937 started from the same state gives
    the same outputs (tests/test_data_mix.py compares both)."""
    k = n.bit_length()
    if count <= 0 or k > 32 or type(rng) is not random.Random:
        return np.array([rng.randrange(n) for _ in range(count)], dtype=np.int64)
    version, internal, gauss = rng.getstate()
    bg = np.random.MT19937()
    bg.state = {"bit_generator": "MT19937", "state": {"key": np.array(internal[:-1], dtype=np.uint32),
                                                      "pos": internal[-1]}}
    parts, need = [], count
    while need:
        saved = bg.state
        r = bg.random_raw(need + need * ((1 << k) - n) // n + 64) >> np.uint64(32 - k)
        ok = np.flatnonzero(r < n)
        if len(ok) >= need:  # one draw too many: draw again from the saved state exactly as many as are used
            bg.state = saved
            bg.random_raw(int(ok[need - 1]) + 1)
            ok = ok[:need]
        parts.append(r[ok])
        need -= len(ok)
    st = bg.state["state"]
    rng.setstate((version, tuple(st["key"].tolist()) + (int(st["pos"]),), gauss))
    return np.concatenate(parts).astype(np.int64)


SPILL_HEAD = 25  # bytes before the JSON line of a spill line: 16 hex digits of exact hash, 8 of CRC-32, a tab


def spill_line(exact: int, line: bytes) -> bytes:
    """A kept record's spill line: the head (`SPILL_HEAD`) and its JSON line."""
    return b"%016x%08x\t" % (exact, zlib.crc32(line)) + line


def spill_head(head: bytes, line: bytes) -> int | None:
    """The exact hash a spill head carries when `line` is still the JSON line it was made for, else None."""
    if len(head) == SPILL_HEAD and int(head[16:24], 16) == zlib.crc32(line):
        return int(head[:16], 16)
    return None


def select_stratum(spill: str, n: int, k: int, seed: str, dev_seed: int, dev_fraction: float, out: str) -> str:
    """One stratum of the mix: k of the n lines of a source's spill (generator seeded with `seed`), written to
    `out` as b"1" (dev) or b"0" (train) + the spill line; an upsampling repeat gets `meta.repeat` and an id
    ending in #r<repeat> (its head then no longer matches its line). The split is a hash of the original id."""
    rng = random.Random(seed)
    dev_key = f"dev\x1f{dev_seed}\x1f"  # stable_id("dev", dev_seed, id)'s text, before the id
    buf: list[bytes] = []
    with open(out, "wb") as fh:
        for rep, sline in select_file(Path(spill), n, k, rng):
            rec_id = None
            if rep:
                head, line = sline[:SPILL_HEAD], sline[SPILL_HEAD:]
                rec = orjson.loads(line)
                rec_id = rec["id"]
                rec["meta"]["repeat"] = rep
                rec["id"] = f"{rec_id}#r{rep}"
                sline = head + dumps(rec)
            elif dev_fraction:
                rec_id = line_id(sline, SPILL_HEAD)
            is_dev = dev_fraction > 0 and int.from_bytes(
                blake2b((dev_key + rec_id).encode("utf-8"), digest_size=16).digest()[:4], "big") / 16**8 < dev_fraction
            buf.append(b"1" if is_dev else b"0")
            buf.append(sline)
            if len(buf) >= 8192:
                fh.writelines(buf)
                buf.clear()
        fh.writelines(buf)
    return out


_ID_AT = b'{"id":"'


def line_id(line: bytes, start: int = 0) -> str:
    """The id of a record's JSON line: read straight from the line when it opens with a plain id, as `dumps`
    writes it (make_record puts the id first), else parsed."""
    if line.startswith(_ID_AT, start):
        begin = start + len(_ID_AT)
        end = line.find(b'"', begin)
        if end > 0 and line.find(b"\\", begin, end) < 0:  # no backslash: the id has no escapes
            return line[begin:end].decode("utf-8")
    return orjson.loads(line[start:])["id"]


def dumps(rec: dict) -> bytes:
    """One JSONL line (orjson: UTF-8, compact)."""
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
