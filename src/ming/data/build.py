"""`ming data build`: raw sources -> converted -> cleaned -> deduplicated -> decontaminated -> mixed -> written.

Pass 1 streams every source once through its converter, the cleaner, exact and near dedup and the eval check,
and spills survivors to one temp file per source (memory: fixed-size filters + the eval index). The plan is then
computed from what is available. Pass 2 selects from each spill file (seeded, streaming), splits train/dev by a
hash of the id, and shuffles through bucket files. Pass 3 audits the written files (schema, exact duplicates,
eval contamination) and writes stats.json, report.md and the resolved recipe.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ming.data.clean import CleanConfig, Cleaner
from ming.data.dedup import (
    EvalIndex,
    ExactDeduper,
    MinHasher,
    NearDeduper,
    find_eval_files,
    norm_for_hash,
    record_hash,
    record_text,
)
from ming.data.mix import BucketShuffler, dumps, plan_mix, select_file
from ming.data.recipe import Recipe, resolve_paths
from ming.data.records import ErrorLog, stable_id, validate_record
from ming.data.report import MixStats, render_report
from ming.data.sources import get_converter
from ming.data.sources._common import SourceContext
from ming.envs import data_dir as env_data_dir
from ming.errors import MingError

BUCKET_RECORDS = 50_000  # records per shuffle bucket: bounds memory of the shuffle


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


def build(recipe: Recipe, out_dir: str | Path, *, data_dir: str | Path | None = None, progress: bool = True,
          max_error_rate: float | None = None, total: int | None = None, audit: bool = True,
          log=None) -> dict:
    """Build the mix into out_dir (train.jsonl, dev.jsonl, stats.json, report.md, recipe.resolved.json)."""
    t0 = time.time()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    if total is not None:
        recipe.total = total
    if max_error_rate is not None:
        recipe.max_error_rate = max_error_rate
    ddir = resolve_data_dir(recipe, data_dir)
    dcfg = {"ngram": 5, "num_perm": 128, "threshold": 0.8, "decontam_threshold": 0.6, "capacity": 2_000_000,
            "backend": "auto", **recipe.dedup}
    hasher = MinHasher(num_perm=int(dcfg["num_perm"]), ngram=int(dcfg["ngram"]))
    exact = ExactDeduper(capacity=int(dcfg["capacity"]), backend=str(dcfg["backend"]))
    near = NearDeduper(threshold=float(dcfg["threshold"]), num_perm=int(dcfg["num_perm"]),
                       capacity=int(dcfg["capacity"]), backend=str(dcfg["backend"]))
    clean_cfg = CleanConfig.from_dict(recipe.clean)
    cleaner = Cleaner(clean_cfg)
    log(f"[ming data] recipe {recipe.name} ({recipe.path}); data folder {ddir}; out {out}")
    log(f"[ming data] dedup: exact={exact.backend}, near={near.backend} (threshold {near.threshold}); "
        f"total={recipe.total}, seed={recipe.seed}, dev_fraction={recipe.dev_fraction}")

    # ---- eval index
    eval_files = _eval_files(recipe, ddir)
    eval_index = EvalIndex(hasher, threshold=float(dcfg["decontam_threshold"]))
    eval_errors = ErrorLog()
    t_eval = time.time()
    eval_index.add_files(eval_files, errors=eval_errors)
    log(f"[ming data] eval index: {eval_index.n_items} items from {len(eval_files)} files "
        f"({time.time() - t_eval:.1f}s)")

    # ---- pass 1: convert, clean, dedup, decontaminate, spill
    source_stats: dict[str, dict] = {}
    available: dict[str, dict[str, int]] = defaultdict(dict)
    spills: dict[tuple[str, str], Path] = {}
    all_errors = ErrorLog()
    contamination_examples: list[str] = []
    t_pass1 = time.time()
    n_in = 0
    for subset in recipe.subsets:
        for spec in subset.sources:
            paths = resolve_paths(spec, ddir)
            ctx = SourceContext(name=spec.name, kind=spec.kind, subset=subset.name, category=subset.category,
                                options=dict(spec.options), licence=spec.licence, encoding=spec.encoding,
                                data_dir=ddir)
            conv = get_converter(spec.kind)
            langs = spec.languages or clean_cfg.languages
            st = Counter()
            drops_before = Counter(cleaner.drops)
            spill = work / f"{subset.name}__{spec.name}.jsonl"
            spills[(subset.name, spec.name)] = spill
            bar = _bar(desc=f"{subset.name}/{spec.name}", disable=not progress)
            with open(spill, "w", encoding="utf-8") as fh:
                for rec in conv.iter_records(paths, ctx):
                    bar.update()
                    st["converted"] += 1
                    rec["category"], rec["subset"] = subset.category, subset.name
                    if subset.system and rec["messages"][0]["role"] != "system":
                        rec["messages"] = [{"role": "system", "content": subset.system}] + rec["messages"]
                    rec = cleaner.clean(rec, languages=langs)
                    if rec is None:
                        st["clean_dropped"] += 1
                        continue
                    if exact.seen_or_add(record_hash(rec)):
                        st["exact_dup"] += 1
                        continue
                    hit = eval_index.match(rec)
                    if hit:
                        st["eval_contaminated"] += 1
                        if len(contamination_examples) < 10:
                            contamination_examples.append(f"{rec['id']} ~ {hit}")
                        continue
                    if near.is_dup_or_add(hasher(norm_for_hash(record_text(rec)), normalized=True)):
                        st["near_dup"] += 1
                        continue
                    st["kept"] += 1
                    fh.write(dumps(rec))
            bar.close()
            rows = sum(ctx.errors.rows.values())
            n_in += st["converted"]
            clean_drops = Counter(cleaner.drops)
            clean_drops.subtract(drops_before)
            source_stats[spec.name] = {
                "subset": subset.name, "category": subset.category, "kind": spec.kind, "licence": spec.licence,
                "paths": [str(p) for p in paths], "rows_read": rows, "bad_input": ctx.errors.n_errors,
                "input_errors": dict(ctx.errors.errors), "input_warnings": dict(ctx.errors.warnings),
                "converter_skips": dict(ctx.skips), "clean_drops": {k: v for k, v in clean_drops.items() if v},
                **{k: st[k] for k in ("converted", "clean_dropped", "exact_dup", "near_dup", "eval_contaminated",
                                      "kept")},
                "cap": spec.cap,
            }
            all_errors.merge(ctx.errors)
            available[subset.name][spec.name] = st["kept"]
            rate = ctx.errors.n_errors / rows if rows else 0.0
            log(f"[ming data] {subset.name}/{spec.name}: rows {rows}, bad {ctx.errors.n_errors}, converted "
                f"{st['converted']}, kept {st['kept']} (clean -{st['clean_dropped']}, exact -{st['exact_dup']}, "
                f"eval -{st['eval_contaminated']}, near -{st['near_dup']})")
            if rate > recipe.max_error_rate:
                shutil.rmtree(work, ignore_errors=True)
                ex = "\n  ".join(ctx.errors.examples[:10])
                raise MingError(f"source {spec.name}: {ctx.errors.n_errors} of {rows} input rows are bad "
                                f"({rate:.1%} > max_error_rate {recipe.max_error_rate:.1%}). First problems:\n  {ex}\n"
                                "Fix the input, or raise the limit with --max-error-rate if skipping them is fine.")
    t_pass1 = time.time() - t_pass1

    # ---- plan
    plan = plan_mix(recipe, available)
    if plan.total <= 0:
        raise MingError("the mix is empty: no source produced any record after cleaning and dedup; see the "
                        "per-source lines above")
    log(f"[ming data] plan: total {plan.total} ({'auto, limited by ' + plan.binding if plan.auto else 'fixed'})")

    # ---- pass 2: select, split, shuffle, write
    t_pass2 = time.time()
    n_buckets = max(1, -(-plan.total // BUCKET_RECORDS))
    rng = random.Random(f"{recipe.seed}|shuffle")
    sh_train = BucketShuffler(work / "train", n_buckets, rng)
    sh_dev = BucketShuffler(work / "dev", max(1, n_buckets // 10), random.Random(f"{recipe.seed}|dev"))
    bar = _bar(total=plan.total, desc="select", disable=not progress)
    for subset in recipe.subsets:
        for spec in subset.sources:
            k = plan.subsets[subset.name].sources.get(spec.name, 0)
            n = available[subset.name][spec.name]
            srng = random.Random(f"{recipe.seed}|{subset.name}|{spec.name}")
            for rep, line in select_file(spills[(subset.name, spec.name)], n, k, srng):
                bar.update()
                rec_id = json.loads(line)["id"] if rep or recipe.dev_fraction else None
                if rep:
                    rec = json.loads(line)
                    rec["meta"]["repeat"] = rep
                    rec["id"] = f"{rec['id']}#r{rep}"
                    line = dumps(rec)
                is_dev = (recipe.dev_fraction > 0 and
                          int(stable_id("dev", recipe.seed, rec_id, n=8), 16) / 16**8 < recipe.dev_fraction)
                (sh_dev if is_dev else sh_train).add(line)
    bar.close()
    stats = MixStats()
    for split, sh in (("train", sh_train), ("dev", sh_dev)):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for line in sh:
                fh.write(line)
                stats.add(json.loads(line), split)
    t_pass2 = time.time() - t_pass2

    # ---- pass 3: audit
    audit_res = audit_files([out / "train.jsonl", out / "dev.jsonl"], eval_index if audit else None,
                            progress=progress) if audit else {}
    shutil.rmtree(work, ignore_errors=True)
    elapsed = time.time() - t0
    result = {
        "recipe": {"name": recipe.name, "path": recipe.path, "seed": recipe.seed, "total": recipe.total,
                   "dev_fraction": recipe.dev_fraction, "max_error_rate": recipe.max_error_rate},
        "data_dir": str(ddir) if ddir else None,
        "out_dir": str(out),
        "plan": plan.to_dict(),
        "mix": stats.to_dict(),
        "sources": source_stats,
        "cleaning": {"drops": dict(cleaner.drops), "pii_replaced": dict(cleaner.pii), "seen": cleaner.seen,
                     "kept": cleaner.kept, "config": asdict(clean_cfg)},
        "dedup": {"exact_backend": exact.backend, "near_backend": near.backend, **{k: dcfg[k] for k in dcfg},
                  "exact_dups": sum(s["exact_dup"] for s in source_stats.values()),
                  "near_dups": sum(s["near_dup"] for s in source_stats.values()),
                  "eval_contaminated": sum(s["eval_contaminated"] for s in source_stats.values()),
                  "contamination_examples": contamination_examples},
        "eval": {"files": [str(f) for f in eval_files], "items": eval_index.n_items,
                 "bad_lines": eval_errors.n_errors},
        "input_problems": all_errors.to_dict(),
        "audit": audit_res,
        "timing": {"seconds": round(elapsed, 1), "pass1_seconds": round(t_pass1, 1),
                   "pass2_seconds": round(t_pass2, 1), "input_records": n_in,
                   "records_per_second": round(n_in / elapsed, 1) if elapsed else None},
    }
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


def audit_files(paths: list[Path], eval_index: EvalIndex | None, progress: bool = False) -> dict:
    """Re-read written files: schema problems, exact duplicates (deliberate upsampling repeats counted apart),
    eval contamination. Memory: 8 bytes per record for the duplicate count."""
    n = invalid = contaminated = repeats = 0
    hashes = []
    examples: list[str] = []
    bar = _bar(desc="audit", disable=not progress)
    for path in paths:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                bar.update()
                n += 1
                rec = json.loads(line)
                problems = validate_record(rec, training=True, require_category=True)
                if problems:
                    invalid += 1
                    if len(examples) < 10:
                        examples.append(f"{path.name}:{line_no}: {problems[0]}")
                if rec.get("meta", {}).get("repeat"):
                    repeats += 1
                    continue
                hashes.append(record_hash(rec))
                if eval_index is not None and eval_index.match(rec):
                    contaminated += 1
    bar.close()
    arr = np.array(hashes, dtype=np.uint64)
    dups = int(len(arr) - len(np.unique(arr))) if len(arr) else 0
    return {"records": n, "schema_errors": invalid, "exact_duplicates": dups, "upsampling_repeats": repeats,
            "eval_contaminated": contaminated if eval_index is not None else None, "examples": examples}
