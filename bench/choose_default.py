"""The default-model rule applied to measured runs (docs/models.md): pooled dev exam-MCQ accuracy per model with
95% Wilson CIs, paired exact McNemar tests between models on the items both answered, the letters each model
answers, and the decode speeds from a bench/engine.py JSON.

    .venv/bin/python bench/choose_default.py \\
        --run 1.5b=runs/eval/1.5b-ll,runs/eval/1.5b-gen --run 0.5b=runs/eval/0.5b-ll,runs/eval/0.5b-gen \\
        --run ming-lite=runs/eval/lite-ll,runs/eval/lite-gen --adapter ming-lite:0.5b \\
        --speed 1.5b=12.3 --speed 0.5b=30.1 --min-speed 15

Rule: among the models at or above --min-speed (tok/s on a quiet 2-core CPU), the most accurate on the pooled
suite; an adapter counts only when it beats its base on that suite (paired, p < 0.05)."""

from __future__ import annotations

import argparse
from collections import Counter

from ming.eval import metrics
from ming.eval.compare import _task_label, load_runs


def mcq_rows(dirs: str) -> dict[tuple[str, str], dict]:
    """MCQ rows keyed by (task and scoring mode, item id), so a loglik row pairs only with a loglik row."""
    return {(_task_label(r), i): r for (_, i), r in load_runs(dirs).items() if r.get("kind") == "mcq"}


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=DIR[,DIR…] (run folders of one model)")
    ap.add_argument("--adapter", action="append", default=[], help="ADAPTER:BASE, e.g. ming-lite:0.5b")
    ap.add_argument("--speed", action="append", default=[], help="NAME=TOK_S (decode speed, quiet 2 cores)")
    ap.add_argument("--min-speed", type=float, default=15.0)
    args = ap.parse_args()
    runs = {n: mcq_rows(d) for n, d in (x.split("=", 1) for x in args.run)}
    common = set.intersection(*(set(r) for r in runs.values()))
    print(f"pooled dev exam MCQs: {len(common)} items answered by every model "
          f"({', '.join(f'{t} {n}' for t, n in sorted(Counter(t for t, _ in common).items()))})\n")
    print("| model | pooled accuracy [95% CI] | loglik | generate | letters answered (generate) |")
    print("|---|---|---|---|---|")
    acc = {}
    for name, rows in runs.items():
        ok = [bool(rows[k]["correct"]) for k in common]
        acc[name] = sum(ok) / len(ok)
        lo, hi = metrics.wilson_ci(sum(ok), len(ok))
        parts = []
        for loglik in (True, False):
            ks = [k for k in common if (rows[k].get("rule") == "loglik") == loglik]
            good = sum(bool(rows[k]["correct"]) for k in ks)
            parts.append(f"{good}/{len(ks)} = {pct(good / len(ks))}" if ks else "-")
        letters = Counter(str(rows[k].get("pred") or "?") for k in common if rows[k].get("rule") != "loglik")
        print(f"| {name} | {pct(acc[name])} [{pct(lo)}, {pct(hi)}] | {parts[0]} | {parts[1]} | "
              f"{', '.join(f'{a} {n}' for a, n in letters.most_common())} |")
    print("\n| A | B | paired n | B − A | only A right | only B right | p (exact McNemar) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    names = list(runs)
    pvals = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            xa = [bool(runs[a][k]["correct"]) for k in common]
            xb = [bool(runs[b][k]["correct"]) for k in common]
            mc = metrics.mcnemar(xa, xb)
            pvals[(a, b)] = pvals[(b, a)] = mc["p"]
            print(f"| {a} | {b} | {len(common)} | {100 * (acc[b] - acc[a]):+.1f} pts | {mc['only_a']} | "
                  f"{mc['only_b']} | {mc['p']:.3g} |")
    speeds = {n: float(v) for n, v in (x.split("=", 1) for x in args.speed)}
    bases = dict(x.split(":", 1) for x in args.adapter)
    eligible = []
    for n in names:
        why = []
        if n in speeds and speeds[n] < args.min_speed:
            why.append(f"decodes {speeds[n]:.1f} < {args.min_speed:g} tok/s")
        if n in bases and not (acc[n] > acc[bases[n]] and pvals.get((n, bases[n]), 1.0) < 0.05):
            why.append(f"does not beat its base {bases[n]} (p = {pvals.get((n, bases[n]), 1.0):.3g})")
        print(f"- {n}: {'eligible' if not why else 'not eligible: ' + '; '.join(why)}")
        if not why:
            eligible.append(n)
    if eligible:
        best = max(eligible, key=lambda n: acc[n])
        print(f"\ndefault by the rule: {best} ({pct(acc[best])} pooled)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
