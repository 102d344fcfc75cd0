"""Benchmark of `ming data build` at MING's scale: mixes of 100k and 1.12M records from replicated, perturbed real
sources, each built three ways — one process, every core, and Dask in local mode — side by side.

    .venv/bin/python bench/data.py                                  # 100,000 and 1,120,000 records, 3 modes each
    .venv/bin/python bench/data.py --records 100000                 # quicker
    .venv/bin/python bench/data.py --records 100000 --modes single,both
    .venv/bin/python bench/data.py --records 1120000 --modes both --against /tmp/base/src   # paired A/B (below)

1. Measures how many records each source of the default recipe yields from ../shared/data.
2. Writes replicas of every input file (or knowledge-graph folder) until each subset has ~1.3x what MING's share
   of --records needs. Replica 0 is the real file; replica r > 0 passes every Chinese character through a
   substitution table of its own (40% of the CJK block remapped; characters that the converters' templates and
   cue words use are left alone) and swaps 40% of Latin-script words for made-up ones, so replicas are not
   near-duplicates of each other or of the eval sets, while lengths, structure and language stay real.
3. Runs the real build (same converters, cleaning, dedup, decontamination against the real eval files, mixing,
   audit) in a child process per mode: `single` (--workers 1), `both` (--workers = every core) and `dask`
   (--engine dask, local processes), and prints input records/s, input records per CPU-second (robust to other
   jobs on the machine), peak RSS, the load average during the run and whether the output is the same as the
   single-process build's (SHA-256 of train.jsonl + dev.jsonl); then the CPU seconds per stage of the local
   builds (the profile by stage).
4. With `--against SRC` (the `src` folder of another checkout, e.g. `git worktree add /tmp/base main`), each mode is
   built `--pairs` times by that code and by this checkout's, alternately on the same replicas, and the ratios are
   printed pair by pair: on a machine whose speed drifts between runs, only such paired figures compare two versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ming.data.sources as sources_pkg
from ming.data.dedup import find_eval_files
from ming.data.pipeline import default_workers
from ming.data.recipe import load_recipe, resolve_paths
from ming.data.sources import get_converter
from ming.data.sources._common import SourceContext
from ming.data.sources.exam_mcq import is_case
from ming.envs import data_dir as env_data_dir

CHILD = r"""
import json, resource, sys, time
from ming.cli.main import main
if __name__ == "__main__":
    t = time.time()
    rc = main(sys.argv[2:])
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    json.dump({"rc": rc, "seconds": time.time() - t, "peak_rss_mb": me.ru_maxrss / 1024,
               "worker_peak_rss_mb": kids.ru_maxrss / 1024,
               "cpu_seconds": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime}, open(sys.argv[1], "w"))
"""
MODES = {"single": ["--workers", "1"], "both": [], "dask": ["--engine", "dask"]}


def protected_chars() -> set[int]:
    """CJK characters used by the converters (cue words such as 考虑/建议/岁, labels, templates): not remapped,
    so that a replica converts like the original."""
    chars: set[int] = set()
    for f in Path(sources_pkg.__file__).parent.glob("*.py"):
        chars.update(ord(c) for c in f.read_text(encoding="utf-8") if 0x4E00 <= ord(c) <= 0x9FA5)
    return chars


def substitution_table(r: int, protected: set[int]) -> dict[int, int]:
    rng = random.Random(f"ming-bench|{r}")
    block = [c for c in range(0x4E00, 0x9FA6) if c not in protected]
    chosen = rng.sample(block, int(0.4 * len(block)))
    targets = rng.sample(block, len(chosen))
    return dict(zip(chosen, targets))


_WORD = re.compile(r"[A-Za-z]{3,}")
_KEEP_WORDS = {"consider", "likely", "probably", "possible", "diagnosis", "suggest", "recommend", "advise", "should",
               "rule", "may", "could", "depends", "the", "and", "you", "your"}


def perturb_text(text: str, r: int, table: dict[int, int], words: dict[str, str]) -> str:
    text = text.translate(table)

    def swap(m):
        w = m.group(0)
        if w.lower() in _KEEP_WORDS:
            return w
        if w not in words:
            rng = random.Random(f"{r}|{w}")
            words[w] = w if rng.random() > 0.4 else "".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                                             for _ in range(len(w)))
        return words[w]

    return _WORD.sub(swap, text)


def perturb_obj(obj, r, table, words):
    if isinstance(obj, str):
        return perturb_text(obj, r, table, words)
    if isinstance(obj, list):
        return [perturb_obj(x, r, table, words) for x in obj]
    if isinstance(obj, dict):
        return {k: (v if k in ("id", "answer", "role") else perturb_obj(v, r, table, words)) for k, v in obj.items()}
    return obj


def measure_yields(recipe, data_dir: Path) -> dict[str, int]:
    out = {}
    for sub in recipe.subsets:
        for spec in sub.sources:
            ctx = SourceContext(name=spec.name, kind=spec.kind, subset=sub.name, category=sub.category,
                                options=dict(spec.options))
            out[spec.name] = sum(1 for _ in get_converter(spec.kind).iter_records(resolve_paths(spec, data_dir), ctx))
    return out


def write_replica(src: Path, dst: Path, r: int, table: dict[int, int] | None, keep=None) -> int:
    """Copy a file, perturbed for r > 0 (JSON values only; big knowledge-graph files: characters only), or every
    .jsonl file of a folder; returns bytes written."""
    if src.is_dir():
        return sum(write_replica(f, dst / f.name, r, table, keep) for f in sorted(src.iterdir()) if f.suffix == ".jsonl")
    dst.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if keep is not None:
        lines = [line for line in lines if keep(line)]
    if table and src.stat().st_size > 10_000_000:
        text = "".join(lines).translate(table)
    elif table:
        words: dict[str, str] = {}
        text = "".join(json.dumps(perturb_obj(json.loads(line), r, table, words), ensure_ascii=False) + "\n"
                       for line in lines if line.strip())
    else:
        text = "".join(lines)
    dst.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def make_bench_data(records: int, data_dir: Path, work: Path, yields: dict[str, int], margin: float = 1.3) -> Path:
    recipe = load_recipe("default")
    wsum = sum(s.weight for s in recipe.subsets)
    if work.exists():
        shutil.rmtree(work)
    tables: dict[int, dict[int, int]] = {}
    protected = protected_chars()
    import yaml

    raw = yaml.safe_load(Path(recipe.path).read_text(encoding="utf-8"))
    t = time.time()
    nbytes = 0
    for sub in recipe.subsets:
        need = records * sub.weight / wsum * margin
        have = sum(yields[s.name] for s in sub.sources) or 1
        copies = max(1, math.ceil(need / have))
        for i, spec in enumerate(sub.sources):
            keep = None
            if spec.kind == "case_reasoning":
                keep = lambda line: is_case(json.loads(line).get("question", ""))  # noqa: E731
            for r in range(copies):
                if r and r not in tables:
                    tables[r] = substitution_table(r, protected)
                for p in resolve_paths(spec, data_dir):
                    nbytes += write_replica(p, work / spec.name / f"r{r:03d}" / p.relative_to(data_dir), r,
                                            tables.get(r), keep)
            rs = raw["subsets"][sub.name]["sources"][i]
            rs["paths"] = [f"{spec.name}/r*/{Path(p).as_posix()}" for p in spec.paths]
            rs.pop("cap", None)
        print(f"  {sub.name}: {copies} copies of {[s.name for s in sub.sources]}", file=sys.stderr)
    raw["total"] = records
    raw["dedup"]["capacity"] = max(2_000_000, int(records * 2.5))
    raw["eval_files"] = [str(f) for f in find_eval_files(data_dir)]
    raw["name"] = f"bench-{records}"
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    print(f"wrote {nbytes / 1e6:.0f} MB of replicas in {time.time() - t:.0f}s to {work}", file=sys.stderr)
    return path


def run_build(recipe: Path, work: Path, out: Path, total: int, mode: str, workers: int, src: str | None = None
              ) -> dict:
    """One build in a child process (`src`: run another checkout's `ming` package instead of this one)."""
    res_file = out.with_suffix(".result.json")
    child = work / "child.py"
    child.write_text(CHILD, encoding="utf-8")
    extra = MODES[mode] + ([] if mode == "single" else ["--workers", str(workers)])
    cmd = [sys.executable, str(child), str(res_file), "data", "build", "--recipe", str(recipe), "--out", str(out),
           "--data-dir", str(work), "--total", str(total), "--no-progress", *extra]
    loads = [os.getloadavg()[0]]
    t = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(cmd, env=env)
    while proc.poll() is None:  # the 1-minute load average every 2 s while the build runs (the machine is shared)
        time.sleep(2)
        loads.append(os.getloadavg()[0])
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    res = json.loads(res_file.read_text())
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for split in ("train", "dev"):
        with open(out / f"{split}.jsonl", "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    n_in = stats["timing"]["input_records"]
    return {"mode": mode, "total": stats["mix"]["total"], "input_records": n_in,
            "seconds": round(time.time() - t, 1), "build_seconds": stats["timing"]["seconds"],
            "cpu_seconds": round(res["cpu_seconds"], 1), "peak_rss_mb": round(res["peak_rss_mb"], 1),
            "worker_peak_rss_mb": round(res["worker_peak_rss_mb"], 1),
            "input_per_s": round(n_in / stats["timing"]["seconds"], 1),
            "input_per_cpu_s": round(n_in / res["cpu_seconds"], 1),
            "load": f"{sum(loads) / len(loads):.1f}/{max(loads):.1f}", "sha": digest.hexdigest()[:12],
            "stage_seconds": stats["timing"].get("stage_seconds"),
            "audit": stats["audit"], "near_backend": stats["dedup"]["near_backend"]}


def reading_seconds(recipe_path: Path, data_dir: Path) -> tuple[float, int]:
    """CPU seconds to read and parse every input row of the recipe alone (the part of `read_convert` that is
    reading; a knowledge graph is read once per source, as the build does) and the rows read."""
    from ming.data.errorlog import ErrorLog
    from ming.data.rawio import iter_rows

    recipe = load_recipe(str(recipe_path))
    t, n = time.process_time(), 0
    for sub in recipe.subsets:
        for spec in sub.sources:
            for p in resolve_paths(spec, data_dir):
                files = [p / "entities.jsonl", p / "triples.jsonl"] if p.is_dir() else [p]
                for f in files:
                    n += sum(1 for _ in iter_rows(f, errors=ErrorLog(), encoding=spec.encoding))
    return time.process_time() - t, n


STAGES = ("eval_index", "read_convert", "clean", "exact_hash", "minhash", "decontaminate", "serialise", "dedup_spill",
          "mix_write", "audit")


def print_table(rows: list[dict], workers: int) -> None:
    print(f"\ncores {default_workers()}, workers {workers}; load = 1-minute load average during the run, mean/max; "
          "CPU = user+sys of the build and its workers")
    print(f"{'records':>8} {'mode':>6} {'input':>9} {'seconds':>8} {'input rec/s':>11} {'CPU s':>7} {'rec/CPU-s':>9} "
          f"{'RSS MB':>7} {'worker MB':>9} {'load':>9} {'output sha':>12} {'dups':>4} {'eval':>4}")
    for r in rows:
        print(f"{r['total']:>8} {r['mode']:>6} {r['input_records']:>9} {r['build_seconds']:>8} {r['input_per_s']:>11} "
              f"{r['cpu_seconds']:>7} {r['input_per_cpu_s']:>9} {r['peak_rss_mb']:>7} {r['worker_peak_rss_mb']:>9} "
              f"{r['load']:>9} {r['sha']:>12} {r['audit']['exact_duplicates']:>4} {r['audit']['eval_contaminated']:>4}")
    by = {(r["total"], r["mode"]): r for r in rows}
    for total in sorted({r["total"] for r in rows}):
        base = by.get((total, "single"))
        for mode in ("both", "dask"):
            r = by.get((total, mode))
            if base and r:
                print(f"{total}: {mode} vs single: {r['input_per_s'] / base['input_per_s']:.2f}x the rate, "
                      f"{r['input_per_cpu_s'] / base['input_per_cpu_s']:.2f}x the records per CPU-second, same output: "
                      f"{'yes' if r['sha'] == base['sha'] else 'NO'}")
    local = [r for r in rows if r["mode"] in ("single", "both") and r.get("stage_seconds")]
    if local:
        print("\nCPU seconds by stage (stats.json timing.stage_seconds, summed over the processes)")
        print(f"{'stage':>22} " + " ".join(f"{str(r['total']) + ' ' + r['mode']:>14}" for r in local))
        for st in STAGES:
            print(f"{st:>22} " + " ".join(f"{r['stage_seconds'].get(st, 0):>14.2f}" for r in local))
        print(f"{'sum':>22} " + " ".join(f"{sum(r['stage_seconds'].get(st, 0) for st in STAGES):>14.2f}"
                                          for r in local))
        parts = sorted({k for r in local for k in r["stage_seconds"] if "." in k})
        for st in parts:  # the parent's stages in parts
            print(f"{st:>22} " + " ".join(f"{r['stage_seconds'].get(st, 0):>14.2f}" for r in local))
    for r in rows:
        if r.get("reading"):
            secs, n = r["reading"]
            print(f"{r['total']}: reading and parsing the {n} input rows alone (one process): {secs:.2f} CPU-s")


def paired(recipe: Path, data: Path, work: Path, n: int, modes: list[str], workers: int, against: str, pairs: int,
           keep: bool) -> None:
    """Before (`against`) and after (this checkout) builds, alternately, `pairs` times per mode; one line a build
    and the after/before ratios of each pair."""
    print(f"\npaired: before = {against}, after = this checkout ({Path(__file__).resolve().parents[1] / 'src'}); "
          f"{n} records; seconds = the build's own (stats.json)")
    print(f"{'mode':>6} {'pair':>4} {'code':>6} {'seconds':>8} {'input rec/s':>11} {'CPU s':>7} {'RSS MB':>7} "
          f"{'worker MB':>9} {'output sha':>12}")
    for mode in modes:
        for k in range(1, pairs + 1):
            got = {}
            for label, src in (("before", against), ("after", None)):
                print(f"building {n} records, mode {mode}, pair {k}, {label} ...", file=sys.stderr)
                out = work / f"out-{n}-{mode}-{label}"
                r = got[label] = run_build(recipe, data, out, n, mode, workers, src=src)
                print(f"{mode:>6} {k:>4} {label:>6} {r['build_seconds']:>8} {r['input_per_s']:>11} {r['cpu_seconds']:>7} "
                      f"{r['peak_rss_mb']:>7} {r['worker_peak_rss_mb']:>9} {r['sha']:>12}", flush=True)
                if not keep:
                    shutil.rmtree(out, ignore_errors=True)
            b, a = got["before"], got["after"]
            print(f"{mode:>6} {k:>4}  after/before: {a['input_per_s'] / b['input_per_s']:.2f}x the rate, "
                  f"{a['cpu_seconds'] / b['cpu_seconds']:.2f}x the CPU, same output: "
                  f"{'yes' if a['sha'] == b['sha'] else 'NO'}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="100000,1120000", help="mix sizes, comma-separated (MING: 1.12M)")
    ap.add_argument("--modes", default="single,both,dask", help="single, both (every core), dask; comma-separated")
    ap.add_argument("--workers", type=int, default=None, help="processes for 'both' and 'dask' (default: cores)")
    ap.add_argument("--data-dir", default=None, help="real data folder (default: ../shared/data)")
    ap.add_argument("--work", default="/tmp/ming-bench-data", help="where replicas and outputs go (deleted after)")
    ap.add_argument("--keep", action="store_true", help="keep the replicas and outputs")
    ap.add_argument("--against", default=None, help="another checkout's src folder: paired before/after builds")
    ap.add_argument("--pairs", type=int, default=2, help="with --against: before/after pairs per mode")
    args = ap.parse_args()
    if args.against and not (Path(args.against) / "ming" / "__init__.py").is_file():
        print(f"--against {args.against}: no ming package there; give a checkout's src folder", file=sys.stderr)
        return 2
    ddir = Path(args.data_dir) if args.data_dir else env_data_dir()
    if ddir is None:
        print("no data folder: pass --data-dir or set MING_DATA_DIR", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        print(f"unknown mode(s) {sorted(unknown)}; known: {', '.join(MODES)}", file=sys.stderr)
        return 2
    workers = args.workers or default_workers()
    work = Path(args.work)

    t = time.time()
    yields = measure_yields(load_recipe("default"), ddir)
    print(f"yields per real copy ({time.time() - t:.0f}s): {yields}", file=sys.stderr)
    rows = []
    for n in [int(x) for x in args.records.split(",")]:
        data = work / f"data-{n}"
        recipe = make_bench_data(n, ddir, data, yields)
        reading = reading_seconds(recipe, data)
        if args.against:
            paired(recipe, data, work, n, modes, workers, args.against, args.pairs, args.keep)
            continue
        for mode in modes:
            print(f"building {n} records, mode {mode} ...", file=sys.stderr)
            r = run_build(recipe, data, work / f"out-{n}-{mode}", n, mode, workers)
            r["reading"] = reading if mode == modes[0] else None
            print(json.dumps(r), file=sys.stderr)
            rows.append(r)
            if not args.keep:
                shutil.rmtree(work / f"out-{n}-{mode}", ignore_errors=True)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    if rows:
        print_table(rows, workers)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
