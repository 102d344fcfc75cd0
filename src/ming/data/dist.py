"""`ming data build --engine dask`: the same build as a Dask graph, on a local cluster or a real one.

Why Dask: it is pure Python (no JVM, unlike Spark; a small install, unlike Ray), its bags run the converters and
the cleaner — plain Python functions over dicts — unchanged, its local scheduler runs on a laptop or in a test,
and `dask scheduler` / `dask worker` (the `distributed` package) scale the same graph to a cluster.

The graph (one partition per input file of a source; a knowledge-graph folder is one file here):

1. map: convert the file with its source's converter, then clean, hash, sign and eval-check the records
   (`RecordStage.run`); the eval index goes to every task as one broadcast value (a broadcast join). The cleaned
   lines stay on the worker's disk (`.work/part-N.jsonl`); features (hash, band keys, eval hit) come back.
2. exact dedup: group by the normalised hash; in each group all but the first record (input order) are dups.
3. near dedup: MinHash bands of the records that survive 2 and the eval check, grouped by (band, key) — the
   LSH join. Buckets with more than one record are the candidate pairs; the driver walks them in input order so
   that a record is a duplicate only of an earlier *kept* one (the rule of the local build), in time linear in
   the number of bucketed records.
4. map: each partition writes its kept lines; the driver concatenates them per source (input order).
5. the mix: a stratified sample — one task per (subset, source) stratum draws its planned count from its spill
   with the stratum's own seeded generator, as the local build does; split, shuffle, write and audit as there.

Same output as the local build (`build`), record for record, with one documented exception: the local build's
Bloom filters have false positives (rate `fp`, 1e-4 by default at full capacity) that the exact grouping here has
not.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ming.data.build import begin, check_bad_input, close_source, finish, make_context, write_result
from ming.data.dedup import band_keys, bloom_available, lsh_params
from ming.data.errorlog import ErrorLog
from ming.data.mix import select_stratum
from ming.data.pipeline import RecordStage, SourceTask, Workers
from ming.data.recipe import Recipe, SourceSpec, SubsetSpec
from ming.data.sources import get_converter
from ming.errors import MingError

@dataclass
class Part:
    """One input file of one source after the map stage: its features (the lines are in `path`)."""

    index: int
    source: str
    n_in: int
    ids: list[str]
    exact: np.ndarray
    keys: np.ndarray  # (records, bands) near-dup band keys
    eval_hits: list[str | None]
    drops: Counter
    pii: Counter
    errors: ErrorLog
    skips: dict
    path: str


def _map_part(shard: tuple, stage: RecordStage, bands: int, rows: int, hashed: bool, data_dir: Path | None,
              work: str) -> Part:
    """Convert one file of one source, then clean, hash, sign and eval-check its records; lines to disk."""
    index, subset, spec, task, path = shard
    ctx = make_context(subset, spec, data_dir)
    recs = list(get_converter(spec.kind).iter_records([path], ctx))
    res = stage.run(task, _dumps(recs)) if recs else None
    out = Path(work) / f"part-{index:05d}.jsonl"
    with open(out, "wb") as fh:
        for line in (res.lines if res else []):
            fh.write(line)
    if res is None:
        return Part(index, spec.name, 0, [], np.zeros(0, np.uint64), np.zeros((0, bands), np.uint64), [],
                    Counter(), Counter(), ctx.errors, dict(ctx.skips), str(out))
    keys = band_keys(res.sigs, bands, rows, hashed=True) if hashed else _bytes_keys(res.sigs, bands, rows)
    return Part(index, spec.name, res.n_in, res.ids, res.exact, np.asarray(keys, dtype=np.uint64).reshape(-1, bands),
                res.eval_hits, res.drops, res.pii, ctx.errors, dict(ctx.skips), str(out))


def _dumps(recs: list[dict]) -> bytes:
    import orjson

    return orjson.dumps(recs)


def _bytes_keys(sigs: np.ndarray, bands: int, rows: int) -> list[list[int]]:
    """Exact band keys as 64-bit integers: the band's bytes hashed with blake2b (collisions ~2^-64)."""
    import hashlib

    out = []
    for row in band_keys(sigs, bands, rows, hashed=False):
        out.append([int.from_bytes(hashlib.blake2b(k, digest_size=8).digest(), "little") for k in row])
    return out


def _exact_entries(part: Part) -> list[tuple[int, tuple[int, int]]]:
    return [(h, (part.index, j)) for j, h in enumerate(part.exact.tolist())]


def _band_entries(part: Part, exact_dups: set) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    out = []
    for j, (hit, keys) in enumerate(zip(part.eval_hits, part.keys.tolist())):
        if hit or (part.index, j) in exact_dups:
            continue
        out += [((b, k), (part.index, j)) for b, k in enumerate(keys)]
    return out


def _write_kept(part: Part, exact_dups: set, near_dups: set) -> tuple[int, Counter]:
    """Keep the part's surviving lines (in order) in its file; the counts by outcome."""
    st: Counter = Counter()
    kept = []
    with open(part.path, "rb") as fh:
        lines = fh.readlines()
    for j, (line, hit) in enumerate(zip(lines, part.eval_hits)):
        if (part.index, j) in exact_dups:
            st["exact_dup"] += 1
        elif hit:
            st["eval_contaminated"] += 1
        elif (part.index, j) in near_dups:
            st["near_dup"] += 1
        else:
            st["kept"] += 1
            kept.append(line)
    with open(part.path, "wb") as fh:
        fh.writelines(kept)
    return part.index, st


def _resolve_near(buckets: list[list[tuple[int, int]]]) -> set:
    """Records (part, row) that share a band with an earlier kept record, walking in input order."""
    of: dict[tuple[int, int], list[int]] = defaultdict(list)
    for b, members in enumerate(buckets):
        for m in members:
            of[m].append(b)
    has_kept = [False] * len(buckets)
    dups = set()
    for rec in sorted(of):
        bs = of[rec]
        if any(has_kept[b] for b in bs):
            dups.add(rec)
        else:
            for b in bs:
                has_kept[b] = True
    return dups


def _client(scheduler: str | None, workers: int):
    """A dask.distributed client for `scheduler`, or None (the local multiprocessing scheduler)."""
    if not scheduler:
        return None
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise MingError("--scheduler needs the dask.distributed package: pip install 'ming[dist]'") from exc
    return Client(scheduler)


def build_dask(recipe: Recipe, out_dir: str | Path, *, data_dir: str | Path | None = None, progress: bool = True,
               max_error_rate: float | None = None, total: int | None = None, audit: bool = True, log=None,
               workers: int | None = None, scheduler: str | None = None) -> dict:
    """`build` on Dask: the local multiprocessing scheduler with `workers` processes, or the cluster at
    `scheduler`. The input files and the output folder must be visible to every worker (a shared file system)."""
    try:
        import dask
        import dask.bag as db
    except ImportError as exc:
        raise MingError("--engine dask needs Dask: pip install 'ming[dist]' (or pip install dask), or use the "
                        "default --engine local") from exc
    t0 = time.time()
    log, out, work, su, n_workers = begin(recipe, out_dir, data_dir, max_error_rate, total, log, workers)
    dcfg = su.dcfg
    near_backend = dcfg["backend"] if dcfg["backend"] != "auto" else ("bloom" if bloom_available() else "memory")
    hashed = near_backend == "bloom"  # the same band keys as the local build's index
    bands, rows = lsh_params(float(dcfg["threshold"]), int(dcfg["num_perm"]), (0.4, 0.6))
    log(f"[ming data] engine dask ({scheduler or f'local, {n_workers} processes'}); recipe {recipe.name}; "
        f"out {out}")

    shards: list[tuple] = []
    specs: list[tuple[SubsetSpec, SourceSpec, SourceTask, list[Path]]] = []
    for subset, spec, task in su.source_tasks():
        _, paths = su.context(subset, spec)
        specs.append((subset, spec, task, paths))
        for p in paths:
            shards.append((len(shards), subset, spec, task, p))
    client = _client(scheduler, n_workers)
    cfg = {"scheduler": "processes", "num_workers": n_workers} if client is None else {}
    seconds: Counter = Counter()
    try:
        return _run(dask, db, cfg, su, recipe, out, work, shards, specs, bands, rows, hashed, n_workers, seconds,
                    audit, progress, log, t0, scheduler)
    finally:
        if client is not None:
            client.close()


def _run(dask, db, cfg, su, recipe, out, work, shards, specs, bands, rows, hashed, n_workers, seconds, audit,
         progress, log, t0, scheduler) -> dict:
    if True:
        with dask.config.set(cfg):
            t = time.time()
            stage = dask.delayed(su.stage, pure=True)  # broadcast: one node that every map task reads
            parts_bag = db.from_sequence(shards, npartitions=max(1, len(shards))).map(
                _map_part, stage, bands, rows, hashed, su.data_dir, str(work))
            parts: list[Part] = sorted(parts_bag.compute(), key=lambda p: p.index)
            seconds["map_convert_clean_sign"] += time.time() - t
            for _, spec, _, _ in specs:  # bad input stops the build before the dedup stages
                errors = ErrorLog()
                for p in parts:
                    if p.source == spec.name:
                        errors.merge(p.errors)
                try:
                    check_bad_input(spec.name, errors, recipe.max_error_rate)
                except MingError:
                    shutil.rmtree(work, ignore_errors=True)
                    raise

            t = time.time()
            pb = db.from_sequence(parts, npartitions=max(1, min(len(parts), 4 * n_workers)))
            groups = pb.map(_exact_entries).flatten().foldby(
                lambda e: e[0], lambda acc, e: acc + [e[1]], [], lambda a, b: a + b, []).compute()
            exact_dups = {s for _, members in groups for s in sorted(members)[1:]}
            dups = dask.delayed(exact_dups, traverse=False)
            seconds["exact_groupby"] += time.time() - t

            t = time.time()
            buckets = pb.map(_band_entries, dups).flatten().foldby(
                lambda e: e[0], lambda acc, e: acc + [e[1]], [], lambda a, b: a + b, []).filter(
                lambda kv: len(kv[1]) > 1).map(lambda kv: sorted(kv[1])).compute()
            near_dups = _resolve_near(buckets)
            seconds["near_band_join"] += time.time() - t

            t = time.time()
            counts = dict(pb.map(_write_kept, dups, dask.delayed(near_dups, traverse=False)).compute())
            seconds["write_kept"] += time.time() - t

    sources: dict[str, dict] = {}
    spills: dict[tuple[str, str], Path] = {}
    all_errors = ErrorLog()
    drops, pii = Counter(), Counter()
    examples: list[str] = []
    by_source: dict[str, list[Part]] = defaultdict(list)
    for p in parts:
        by_source[p.source].append(p)
    for subset, spec, task, paths in specs:
        ctx, _ = su.context(subset, spec)
        st: Counter = Counter()
        src_drops: Counter = Counter()
        spill = work / f"{subset.name}__{spec.name}.jsonl"
        spills[(subset.name, spec.name)] = spill
        with open(spill, "wb") as fh:
            for p in by_source[spec.name]:
                ctx.errors.merge(p.errors)
                for k, v in p.skips.items():
                    ctx.skip(k, v)
                st["converted"] += p.n_in
                st["clean_dropped"] += p.n_in - len(p.ids)
                st.update(counts[p.index])
                src_drops.update(p.drops)
                pii.update(p.pii)
                for j, hit in enumerate(p.eval_hits):
                    if hit and (p.index, j) not in exact_dups and len(examples) < 10:
                        examples.append(f"{p.ids[j]} ~ {hit}")
                with open(p.path, "rb") as part_fh:
                    shutil.copyfileobj(part_fh, fh)
                Path(p.path).unlink()
        close_source(subset, spec, paths, ctx, st, src_drops, sources, drops, all_errors, work,
                     recipe.max_error_rate, log)

    def sample_strata(jobs: list[tuple]) -> list[str]:
        with dask.config.set(cfg):
            return db.from_sequence(jobs, npartitions=max(1, len(jobs))).starmap(select_stratum).compute()

    with Workers(su.stage, n_workers) as pool:
        result = finish(su, out, work, sources, spills, all_errors, drops, pii, examples, pool=pool, audit=audit,
                        progress=progress, log=log, seconds=seconds, sample=sample_strata)
    result["dedup"].update(exact_backend="groupby", near_backend=f"band join ({bands} bands x {rows} rows)")
    result["timing"].update(workers=n_workers, mode="dask" + (f" {scheduler}" if scheduler else " local"))
    return write_result(result, out, t0, recipe, su.data_dir)
