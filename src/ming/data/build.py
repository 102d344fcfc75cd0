"""`ming data build`: raw sources -> converted -> cleaned -> deduplicated -> decontaminated -> mixed -> written.

Pass 1 streams every source once through its converter, the cleaner, exact and near dedup and the eval check,
and spills survivors to one temp file per source (memory: fixed-size filters + the eval index). The plan is then
computed from what is available. Pass 2 selects from each spill file (seeded, streaming, one task per source),
splits train/dev by a hash of the id, and shuffles through bucket files. Pass 3 audits the written lines (schema,
exact duplicates, eval contamination; pass 1's hash and eval check reused for a line its carried CRC-32 shows
unchanged) while they are written, and the build writes stats.json, report.md and the resolved recipe.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

import orjson

from ming.data.clean import CleanConfig
from ming.data.dedup import EvalIndex, ExactDeduper, MinHasher, NearDeduper, find_eval_files
from ming.data.errorlog import ErrorLog
from ming.data.mix import SPILL_HEAD, BucketShuffler, plan_mix
from ming.data.pipeline import (BatchResult, RecordStage, SourceTask, Workers, default_workers, make_context,
                                source_shards)
from ming.data.recipe import Recipe, SourceSpec, SubsetSpec, resolve_paths
from ming.data.report import MixStats, render_report
from ming.data.sources._common import SourceContext
from ming.envs import data_dir as env_data_dir
from ming.errors import MingError

BUCKET_RECORDS = 50_000  # records per shuffle bucket: bounds memory of the shuffle
AUDIT_LINES = 2048  # written lines per audit task
SPREAD_BYTES = 4 << 20  # drawn lines are spread over the shuffle buckets this many bytes at a time


def _bar(total=None, desc="", disable=False, unit="rec"):
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal (logs stay readable)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=True if disable else None,
                dynamic_ncols=True, leave=False, mininterval=0.5)


def resolve_data_dir(recipe: Recipe, data_dir: str | Path | None) -> Path | None:
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if recipe.data_dir:
        return Path(recipe.data_dir).expanduser().resolve()
    return env_data_dir()


def _eval_files(recipe: Recipe, data_dir: Path | None) -> list[Path]:
    if recipe.eval_files == "auto":
        return find_eval_files(data_dir) if data_dir else []
    files: list[Path] = []
    listed = list(recipe.eval_files or [])
    if "auto" in listed:  # [auto, extra/file.jsonl]: every dev/test file plus the ones named
        listed.remove("auto")
        files = find_eval_files(data_dir) if data_dir else []
    for f in listed:
        p = Path(f) if Path(f).is_absolute() or data_dir is None else data_dir / f
        if not p.is_file():
            raise MingError(f"eval file {p} does not exist; fix 'eval_files' in the recipe")
        files.append(p)
    return files


@dataclass
class BuildSetup:
    """What every execution mode of the build shares: the recipe with its overrides, the data folder, the
    dedup settings and the per-record stage."""

    recipe: Recipe
    data_dir: Path | None
    dcfg: dict
    clean_cfg: CleanConfig
    hasher: MinHasher | None  # None until `index_eval`
    eval_index: EvalIndex | None
    eval_files: list[Path]
    eval_errors: ErrorLog
    eval_seconds: float = 0.0
    eval_cpu_seconds: float = 0.0

    def index_eval(self, log) -> None:
        """The MinHasher and the eval index of the eval files."""
        t, c = time.time(), time.process_time()
        self.hasher = MinHasher(num_perm=int(self.dcfg["num_perm"]), ngram=int(self.dcfg["ngram"]))
        self.eval_index = EvalIndex(self.hasher, threshold=float(self.dcfg["decontam_threshold"]))
        self.eval_index.add_files(self.eval_files, errors=self.eval_errors)
        self.eval_seconds, self.eval_cpu_seconds = time.time() - t, time.process_time() - c
        log(f"[ming data] eval index: {self.eval_index.n_items} items from {len(self.eval_files)} files "
            f"({self.eval_seconds:.1f}s)")

    @property
    def stage(self) -> RecordStage:
        return RecordStage(self.clean_cfg, self.hasher, self.eval_index)

    def near_deduper(self) -> NearDeduper:
        d = self.dcfg
        return NearDeduper(threshold=float(d["threshold"]), num_perm=int(d["num_perm"]), capacity=int(d["capacity"]),
                           backend=str(d["backend"]))

    def source_tasks(self) -> Iterator[tuple[SubsetSpec, SourceSpec, SourceTask]]:
        for subset in self.recipe.subsets:
            for spec in subset.sources:
                yield subset, spec, SourceTask(spec.name, subset.category, subset.name, subset.system,
                                               spec.languages or self.clean_cfg.languages)

    def context(self, subset: SubsetSpec, spec: SourceSpec) -> tuple[SourceContext, list[Path]]:
        return make_context(subset, spec, self.data_dir), resolve_paths(spec, self.data_dir)


def setup(recipe: Recipe, *, data_dir: str | Path | None = None, max_error_rate: float | None = None,
          total: int | None = None, log=None, index: bool = True) -> BuildSetup:
    """Apply the overrides, resolve the data folder and (unless `index` is False: `BuildSetup.index_eval`
    later) index the eval files."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if total is not None:
        recipe.total = total
    if max_error_rate is not None:
        recipe.max_error_rate = max_error_rate
    ddir = resolve_data_dir(recipe, data_dir)
    dcfg = {"ngram": 5, "num_perm": 128, "threshold": 0.8, "decontam_threshold": 0.6, "capacity": 2_000_000,
            "backend": "auto", **recipe.dedup}
    su = BuildSetup(recipe, ddir, dcfg, CleanConfig.from_dict(recipe.clean), None, None, _eval_files(recipe, ddir),
                    ErrorLog())
    if index:
        su.index_eval(log)
    return su


def source_stats(subset: SubsetSpec, spec: SourceSpec, paths: list[Path], ctx: SourceContext, st: Counter,
                 clean_drops: Counter) -> dict:
    return {"subset": subset.name, "category": subset.category, "kind": spec.kind, "licence": spec.licence,
            "paths": [str(p) for p in paths], "rows_read": sum(ctx.errors.rows.values()),
            "bad_input": ctx.errors.n_errors, "input_errors": dict(ctx.errors.errors),
            "input_warnings": dict(ctx.errors.warnings), "converter_skips": dict(ctx.skips),
            "clean_drops": {k: v for k, v in clean_drops.items() if v},
            **{k: st[k] for k in ("converted", "clean_dropped", "exact_dup", "near_dup", "eval_contaminated",
                                  "kept")},
            "cap": spec.cap}


def check_source(s: dict, name: str, ctx_errors: ErrorLog, max_error_rate: float, log) -> None:
    """Log a source's line; raise when its bad input passes the error-rate limit (the contract of every mode)."""
    rows = s["rows_read"]
    log(f"[ming data] {s['subset']}/{name}: rows {rows}, bad {s['bad_input']}, converted {s['converted']}, kept "
        f"{s['kept']} (clean -{s['clean_dropped']}, exact -{s['exact_dup']}, eval -{s['eval_contaminated']}, "
        f"near -{s['near_dup']})")
    check_bad_input(name, ctx_errors, max_error_rate)


def check_bad_input(name: str, errors: ErrorLog, max_error_rate: float) -> None:
    """Raise when more than max_error_rate of a source's input rows are bad, naming the first file:line."""
    rows, bad = sum(errors.rows.values()), errors.n_errors
    rate = bad / rows if rows else 0.0
    if rate > max_error_rate:
        ex = "\n  ".join(errors.examples[:10])
        raise MingError(f"source {name}: {bad} of {rows} input rows are bad ({rate:.1%} > "
                        f"max_error_rate {max_error_rate:.1%}). First problems:\n  {ex}\n"
                        "Fix the input, or raise the limit with --max-error-rate if skipping them is fine.")


def fresh_out(out_dir: str | Path) -> tuple[Path, Path]:
    """The output folder (created) and an empty work folder inside it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    return out, work


def begin(recipe: Recipe, out_dir: str | Path, data_dir: str | Path | None, max_error_rate: float | None,
          total: int | None, log, workers: int | None, index: bool = True) -> tuple:
    """(log, out folder, work folder, BuildSetup, worker count): the start every engine shares."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out, work = fresh_out(out_dir)
    su = setup(recipe, data_dir=data_dir, max_error_rate=max_error_rate, total=total, log=log, index=index)
    return log, out, work, su, workers or default_workers()


def close_source(subset: SubsetSpec, spec: SourceSpec, paths: list[Path], ctx: SourceContext, st: Counter,
                 src_drops: Counter, sources: dict, drops: Counter, all_errors: ErrorLog, work: Path,
                 max_error_rate: float, log) -> None:
    """Record a finished source's statistics and problems; stop the build (work folder removed) when its bad
    input passes the limit."""
    drops.update(src_drops)
    all_errors.merge(ctx.errors)
    sources[spec.name] = source_stats(subset, spec, paths, ctx, st, src_drops)
    try:
        check_source(sources[spec.name], spec.name, ctx.errors, max_error_rate, log)
    except MingError:
        shutil.rmtree(work, ignore_errors=True)
        raise


class _Source:
    """A source while its shards come back: its context (problems, skips), counts and spill file."""

    def __init__(self, index: int, subset: SubsetSpec, spec: SourceSpec, su: BuildSetup, work: Path, progress: bool):
        self.index, self.subset, self.spec = index, subset, spec
        self.ctx, self.paths = su.context(subset, spec)
        self.st: Counter = Counter()
        self.drops: Counter = Counter()
        self.spill = work / f"{subset.name}__{spec.name}.jsonl"
        self.fh = open(self.spill, "wb")
        self.bar = _bar(desc=f"{subset.name}/{spec.name}", disable=not progress)

    def decide(self, res: BatchResult, exact: ExactDeduper, near: NearDeduper, pii: Counter, seconds: Counter,
               examples: list[str]) -> None:
        """Exact duplicate, eval hit, near duplicate or kept, for every record of a batch in order (first come
        first kept); the kept lines go to the spill file."""
        st = self.st
        self.bar.update(res.n_in)
        n = len(res.lines)
        st["converted"] += res.n_in
        st["clean_dropped"] += res.n_in - n
        self.drops.update(res.drops)
        pii.update(res.pii)
        seconds.update(res.seconds)
        if not n:
            return
        t0 = time.process_time()
        dup = exact.seen_or_add_many(res.exact)
        t1 = time.process_time()
        hit = np.fromiter((bool(h) for h in res.eval_hits), dtype=bool, count=n)
        contaminated = hit & ~dup
        cand = ~dup & ~hit
        near_dup = np.zeros(n, dtype=bool)
        near_dup[cand] = near.dup_or_add_many(res.keys[cand])
        t2 = time.process_time()
        keep = np.flatnonzero(cand & ~near_dup).tolist()
        st["exact_dup"] += int(dup.sum())
        st["eval_contaminated"] += int(contaminated.sum())
        st["near_dup"] += int(near_dup.sum())
        st["kept"] += len(keep)
        for i in np.flatnonzero(contaminated)[:max(0, 10 - len(examples))].tolist():
            examples.append(f"{res.ids[i]} ~ {res.eval_hits[i]}")
        lines = res.lines
        self.fh.write(b"".join([lines[i] for i in keep]))
        # parts of the parent's "dedup_spill" stage
        seconds["dedup_spill.exact"] += t1 - t0
        seconds["dedup_spill.lsh"] += t2 - t1
        seconds["dedup_spill.write"] += time.process_time() - t2

    def close(self) -> None:
        self.fh.close()
        self.bar.close()


def build(recipe: Recipe, out_dir: str | Path, *, data_dir: str | Path | None = None, progress: bool = True,
          max_error_rate: float | None = None, total: int | None = None, audit: bool = True,
          log=None, workers: int | None = None) -> dict:
    """Build the mix into out_dir (train.jsonl, dev.jsonl, stats.json, report.md, recipe.resolved.json).
    `workers`: processes for the per-record stages (default: every core this process may use; 1 = none)."""
    t0 = time.time()
    log, out, work, su, n_workers = begin(recipe, out_dir, data_dir, max_error_rate, total, log, workers,
                                          index=False)
    dcfg = su.dcfg

    # ---- pass 1: read + convert + clean + hash + sign + eval check (shards, in the workers), dedup in order
    # (here, a batch at a time), spill
    sources: dict[str, dict] = {}
    spills: dict[tuple[str, str], Path] = {}
    all_errors = ErrorLog()
    drops, pii = Counter(), Counter()
    contamination_examples: list[str] = []
    t_pass1 = time.time()
    specs = list(su.source_tasks())

    def shards():
        for i, (subset, spec, task) in enumerate(specs):
            yield from ((sh,) for sh in source_shards(i, subset, spec, task, resolve_paths(spec, su.data_dir),
                                                      su.data_dir))

    # the workers start before the eval index exists: they read and convert their first shards while this
    # process builds it, then take it (with the MinHasher and the bands) from `shared` (`RecordStage.share`)
    stage = RecordStage(su.clean_cfg, None, None, shared=work / "stage.pickle", kg_cache=work / "kg")
    with Workers(stage, n_workers) as pool:
        results = pool.map("convert_shard", shards())
        su.index_eval(log)
        seconds: Counter = Counter({"eval_index": su.eval_cpu_seconds})  # CPU seconds per stage, summed over
        # the processes
        exact = ExactDeduper(capacity=int(dcfg["capacity"]), backend=str(dcfg["backend"]))
        near = su.near_deduper()
        log(f"[ming data] recipe {recipe.name} ({recipe.path}); data folder {su.data_dir}; out {out}")
        log(f"[ming data] dedup: exact={exact.backend}, near={near.backend} (threshold {near.threshold}); "
            f"total={recipe.total}, seed={recipe.seed}, dev_fraction={recipe.dev_fraction}; workers {n_workers}")
        stage.share(su.hasher, su.eval_index, (near.bands, near.rows), to_file=pool.n > 1)
        cur = None
        for fr in results:
            if cur is None or cur.index != fr.source:
                subset, spec, _ = specs[fr.source]
                cur = _Source(fr.source, subset, spec, su, work, progress)
                spills[(subset.name, spec.name)] = cur.spill
            cur.ctx.errors.merge(fr.errors)
            for k, v in fr.skips.items():
                cur.ctx.skip(k, v)
            seconds["read_convert"] += fr.convert_seconds
            for res in fr.batches:
                t = time.process_time()
                cur.decide(res, exact, near, pii, seconds, contamination_examples)
                seconds["dedup_spill"] += time.process_time() - t
            if fr.last:
                cur.close()
                close_source(cur.subset, cur.spec, cur.paths, cur.ctx, cur.st, cur.drops, sources, drops, all_errors,
                             work, recipe.max_error_rate, log)
        t_pass1 = time.time() - t_pass1
        result = finish(su, out, work, sources, spills, all_errors, drops, pii, contamination_examples,
                        pool=pool, audit=audit, progress=progress, log=log, seconds=seconds)
    result["dedup"].update(exact_backend=exact.backend, near_backend=near.backend)
    result["timing"].update(pass1_seconds=round(t_pass1, 1), workers=n_workers, mode="local")
    return write_result(result, out, t0, recipe, su.data_dir)


def finish(su: BuildSetup, out: Path, work: Path, sources: dict[str, dict], spills: dict[tuple[str, str], Path],
           all_errors: ErrorLog, drops: Counter, pii: Counter, contamination_examples: list[str], *,
           pool: Workers, audit: bool, progress: bool, log, seconds: Counter, sample=None) -> dict:
    """Plan, pass 2 (select, split, shuffle, write) and pass 3 (audit) from the spill files of pass 1; the result
    dict that becomes stats.json. The strata (one per source) are drawn by `select_stratum` in the pool's
    workers, or by `sample(jobs)` when given (the distributed build draws them in the engine): it gets the
    argument tuples of `select_stratum` and returns the files written, in order."""
    recipe = su.recipe
    available: dict[str, dict[str, int]] = defaultdict(dict)
    for subset in recipe.subsets:
        for spec in subset.sources:
            available[subset.name][spec.name] = sources[spec.name]["kept"]
    plan = plan_mix(recipe, available)
    if plan.total <= 0:
        raise MingError("the mix is empty: no source produced any record after cleaning and dedup; see the "
                        "per-source lines above")
    log(f"[ming data] plan: total {plan.total} ({'auto, limited by ' + plan.binding if plan.auto else 'fixed'})")

    # ---- pass 2: select (one task per stratum, where the stage runs), split, shuffle, write; pass 3, the audit of
    # the written lines, runs in the workers while the parent writes
    t_pass2, c_pass2 = time.time(), time.process_time()
    n_buckets = max(1, -(-plan.total // BUCKET_RECORDS))
    rng = random.Random(f"{recipe.seed}|shuffle")
    sh_train = BucketShuffler(work / "train", n_buckets, rng)
    sh_dev = BucketShuffler(work / "dev", max(1, n_buckets // 10), random.Random(f"{recipe.seed}|dev"))
    strata = [(s.name, src.name) for s in recipe.subsets for src in s.sources]
    jobs = [(str(spills[(sub, src)]), available[sub][src], plan.subsets[sub].sources.get(src, 0),
             f"{recipe.seed}|{sub}|{src}", recipe.seed, recipe.dev_fraction, str(work / f"select-{i}.bin"))
            for i, (sub, src) in enumerate(strata)]
    def drawn() -> Iterator[str]:
        """The strata's files in order, each as soon as it is drawn (the next ones are drawn meanwhile)."""
        for path, cpu in pool.map("select", jobs):
            if pool.n > 1:  # the workers' share of the selection
                seconds["mix_write.select"] += cpu
                seconds["mix_write"] += cpu
            yield path

    bar = _bar(total=plan.total, desc="select", disable=not progress)
    for path in (sample(jobs) if sample is not None else drawn()):
        with open(path, "rb") as fh:
            while True:  # lines of b"1" (dev) or b"0" (train), then the spill line; train and dev lines are
                block = fh.readlines(SPREAD_BYTES)  # shuffled with generators of their own, so each
                if not block:  # kind can be spread apart
                    break
                bar.update(len(block))
                sh_train.add_many([line[1:] for line in block if line[:1] != b"1"])
                sh_dev.add_many([line[1:] for line in block if line[:1] == b"1"])
        Path(path).unlink()
    bar.close()
    stats = MixStats()
    seconds["mix_write.select"] += time.process_time() - c_pass2  # plan, selection, split, shuffle buckets
    write_cpu = [0.0]

    def written() -> Iterator[tuple]:
        """Write train/dev.jsonl (the JSON lines of the shuffled spill lines) and yield them as audit tasks."""
        c = time.process_time()
        for split, sh in (("train", sh_train), ("dev", sh_dev)):
            with open(out / f"{split}.jsonl", "wb") as fh:
                rest: list[bytes] = []  # spill lines not yet in a task: tasks of AUDIT_LINES across buckets
                first = 1
                for bucket in sh.buckets():
                    rest += bucket
                    full = len(rest) - len(rest) % AUDIT_LINES
                    for i in range(0, full, AUDIT_LINES):
                        part = rest[i:i + AUDIT_LINES]
                        lines = [sline[SPILL_HEAD:] for sline in part]
                        fh.write(b"".join(lines))
                        write_cpu[0] += time.process_time() - c
                        yield lines, [sline[:SPILL_HEAD] for sline in part], f"{split}.jsonl", first, split
                        c = time.process_time()
                        first += len(lines)
                    rest = rest[full:]
                if rest:
                    lines = [sline[SPILL_HEAD:] for sline in rest]
                    fh.write(b"".join(lines))
                    write_cpu[0] += time.process_time() - c
                    yield lines, [sline[:SPILL_HEAD] for sline in rest], f"{split}.jsonl", first, split
                    c = time.process_time()
        write_cpu[0] += time.process_time() - c

    c_write = time.process_time()
    if audit:  # the audit tasks also count the mix statistics
        audit_res = audit_lines(written(), pool, stats, progress=progress)
    else:
        audit_res = {}
        for lines, _, _, _, split in written():
            for line in lines:
                stats.add(orjson.loads(line), split)
    t_pass2 = time.time() - t_pass2
    worker_cpu = audit_res.pop("_cpu_seconds", 0.0)
    seconds["mix_write.write"] += write_cpu[0]  # shuffled lines to train/dev.jsonl, mix stats
    seconds["mix_write"] += (c_write - c_pass2) + write_cpu[0]
    seconds["audit"] += time.process_time() - c_write - write_cpu[0] + (worker_cpu if pool.n > 1 else 0.0)
    shutil.rmtree(work, ignore_errors=True)
    cleaner_seen = sum(s["converted"] for s in sources.values())
    cleaner_kept = cleaner_seen - sum(s["clean_dropped"] for s in sources.values())
    return {
        "recipe": {"name": recipe.name, "path": recipe.path, "seed": recipe.seed, "total": recipe.total,
                   "dev_fraction": recipe.dev_fraction, "max_error_rate": recipe.max_error_rate},
        "data_dir": str(su.data_dir) if su.data_dir else None,
        "out_dir": str(out),
        "plan": plan.to_dict(),
        "mix": stats.to_dict(),
        "sources": sources,
        "cleaning": {"drops": dict(drops), "pii_replaced": dict(pii), "seen": cleaner_seen, "kept": cleaner_kept,
                     "config": asdict(su.clean_cfg)},
        "dedup": {**{k: su.dcfg[k] for k in su.dcfg},
                  "exact_dups": sum(s["exact_dup"] for s in sources.values()),
                  "near_dups": sum(s["near_dup"] for s in sources.values()),
                  "eval_contaminated": sum(s["eval_contaminated"] for s in sources.values()),
                  "contamination_examples": contamination_examples},
        "eval": {"files": [str(f) for f in su.eval_files], "items": su.eval_index.n_items,
                 "bad_lines": su.eval_errors.n_errors},
        "input_problems": all_errors.to_dict(),
        "audit": audit_res,
        "timing": {"pass2_seconds": round(t_pass2, 1), "eval_index_seconds": round(su.eval_seconds, 1),
                   "input_records": sum(s["converted"] for s in sources.values()),
                   "stage_seconds": {k: round(v, 2) for k, v in seconds.items()}},
    }


def write_result(result: dict, out: Path, t0: float, recipe: Recipe, ddir: Path | None) -> dict:
    elapsed = time.time() - t0
    n_in = result["timing"]["input_records"]
    result["timing"].update(seconds=round(elapsed, 1),
                            records_per_second=round(n_in / elapsed, 1) if elapsed else None)
    (out / "stats.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "report.md").write_text(render_report(result), encoding="utf-8")
    resolved = {"recipe_file": recipe.path, "data_dir": str(ddir) if ddir else None,
                "recipe": _recipe_dict(recipe, ddir)}
    (out / "recipe.resolved.json").write_text(json.dumps(resolved, ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def _recipe_dict(recipe: Recipe, ddir: Path | None) -> dict:
    d = asdict(recipe)
    for s, sd in zip(recipe.subsets, d["subsets"]):
        for spec, srcd in zip(s.sources, sd["sources"]):
            srcd["resolved_paths"] = [str(p) for p in resolve_paths(spec, ddir)]
    return d


def audit_lines(jobs: Iterator[tuple], pool: Workers, stats: MixStats, with_eval: bool = True,
                progress: bool = False) -> dict:
    """Audit written lines, `AUDIT_LINES` at a time in the workers (`RecordStage.audit`): schema problems, exact
    duplicates (deliberate upsampling repeats counted apart), eval contamination (when the pool's stage has an
    eval index); their mix statistics are added to `stats` in order. `jobs`: (lines, spill heads, file name,
    number of the first line, split). Memory: 8 bytes per record for the duplicate count."""
    n = invalid = contaminated = repeats = 0
    cpu = 0.0
    hashes = []
    examples: list[str] = []
    bar = _bar(desc="audit", disable=not progress)
    for r in pool.map("audit", jobs):
        bar.update(r["records"])
        n += r["records"]
        invalid += r["invalid"]
        repeats += r["repeats"]
        contaminated += r["contaminated"]
        examples += r["examples"][:max(0, 10 - len(examples))]
        hashes.append(r["hashes"])
        stats.merge(r["stats"])
        cpu += r["cpu_seconds"]
    bar.close()
    arr = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    arr.sort()
    dups = int(np.count_nonzero(arr[1:] == arr[:-1]))  # repeats of a hash (a sort: faster than np.unique)
    return {"records": n, "schema_errors": invalid, "exact_duplicates": dups, "upsampling_repeats": repeats,
            "eval_contaminated": contaminated if with_eval else None, "examples": examples, "_cpu_seconds": cpu}
