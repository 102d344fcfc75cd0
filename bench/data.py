"""Benchmark of `ming data build` at MING's scale: a 1.12M-record mix from replicated, perturbed real sources.

    .venv/bin/python bench/data.py                      # 1,120,000 records, plus a 1/10 run for comparison
    .venv/bin/python bench/data.py --records 100000     # quicker

1. Measures how many records each source of the default recipe yields from ../shared/data.
2. Writes replicas of every input file (or knowledge-graph folder) until each subset has ~1.3x what MING's share
   of --records needs. Replica 0 is the real file; replica r > 0 passes every Chinese character through a
   substitution table of its own (40% of the CJK block remapped; characters that the converters' templates and
   cue words use are left alone) and swaps 40% of Latin-script words for made-up ones, so replicas are not
   near-duplicates of each other or of the eval sets, while lengths, structure and language stay real.
3. Runs the real build (same converters, cleaning, dedup, decontamination against the real eval files, mixing)
   in a child process, twice: --records/10 and --records, and prints records/s and peak RSS side by side.
"""

from __future__ import annotations

import argparse
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

CHILD = r"""
import json, resource, sys, time
from ming.cli.main import main
t = time.time()
rc = main(sys.argv[2:])
json.dump({"rc": rc, "seconds": time.time() - t,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(sys.argv[1], "w"))
"""


def protected_chars() -> set[int]:
    """CJK characters used by the converters (cue words such as 考虑/建议/岁, labels, templates): not remapped,
    so that a replica converts like the original."""
    import ming.data.sources as pkg

    chars: set[int] = set()
    for f in Path(pkg.__file__).parent.glob("*.py"):
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
    from ming.data.recipe import resolve_paths
    from ming.data.sources import get_converter
    from ming.data.sources._common import SourceContext

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
    from ming.data.dedup import find_eval_files
    from ming.data.recipe import load_recipe, resolve_paths
    from ming.data.sources.exam_mcq import is_case

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


def run_build(recipe: Path, work: Path, out: Path, total: int) -> dict:
    res_file = out.with_suffix(".result.json")
    cmd = [sys.executable, "-c", CHILD, str(res_file), "data", "build", "--recipe", str(recipe), "--out", str(out),
           "--data-dir", str(work), "--total", str(total), "--no-progress"]
    t = time.time()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    res = json.loads(res_file.read_text())
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    return {"total": stats["mix"]["total"], "input_records": stats["timing"]["input_records"],
            "seconds": round(time.time() - t, 1), "peak_rss_mb": round(res["peak_rss_mb"], 1),
            "input_per_s": round(stats["timing"]["input_records"] / stats["timing"]["seconds"], 1),
            "output_per_s": round(stats["mix"]["total"] / stats["timing"]["seconds"], 1),
            "audit": stats["audit"], "near_backend": stats["dedup"]["near_backend"]}


def main() -> int:
    from ming.envs import data_dir as env_data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_120_000, help="records in the big mix (MING: 1.12M)")
    ap.add_argument("--data-dir", default=None, help="real data folder (default: ../shared/data)")
    ap.add_argument("--work", default="/tmp/ming-bench-data", help="where replicas and outputs go (deleted after)")
    ap.add_argument("--keep", action="store_true", help="keep the replicas and outputs")
    ap.add_argument("--no-small", action="store_true", help="skip the --records/10 comparison run")
    args = ap.parse_args()
    ddir = Path(args.data_dir) if args.data_dir else env_data_dir()
    if ddir is None:
        print("no data folder: pass --data-dir or set MING_DATA_DIR", file=sys.stderr)
        return 2
    work = Path(args.work)
    from ming.data.recipe import load_recipe

    t = time.time()
    yields = measure_yields(load_recipe("default"), ddir)
    print(f"yields per real copy ({time.time() - t:.0f}s): {yields}", file=sys.stderr)
    results = {}
    sizes = ([] if args.no_small else [args.records // 10]) + [args.records]
    for n in sizes:
        data = work / f"data-{n}"
        recipe = make_bench_data(n, ddir, data, yields)
        print(f"building {n} records ...", file=sys.stderr)
        results[n] = run_build(recipe, data, work / f"out-{n}", n)
        print(json.dumps({n: results[n]}), file=sys.stderr)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    print(f"\n{'records':>10} {'input':>10} {'seconds':>8} {'input rec/s':>12} {'output rec/s':>13} {'peak RSS MB':>12} "
          f"{'exact dups':>10} {'eval hits':>9}")
    for n, r in results.items():
        print(f"{r['total']:>10} {r['input_records']:>10} {r['seconds']:>8} {r['input_per_s']:>12} {r['output_per_s']:>13} "
              f"{r['peak_rss_mb']:>12} {r['audit']['exact_duplicates']:>10} {r['audit']['eval_contaminated']:>9}")
    if len(results) == 2:
        small, big = results[sizes[0]], results[sizes[1]]
        print(f"\nratios big/small: records {big['total'] / small['total']:.1f}x, time "
              f"{big['seconds'] / small['seconds']:.1f}x, peak RSS {big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x "
              f"(near-dup index: {big['near_backend']})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
