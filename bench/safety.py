"""Benchmark the safety layer: triage recall / precision / false-positive rate on the labelled set,
and the time per message of triage and of the whole SafetyPolicy.check (uncached, pure Python).

    .venv/bin/python bench/safety.py                 # figures on bench/data/safety_eval.jsonl
    .venv/bin/python bench/safety.py --errors        # also list every miss and false alarm
    .venv/bin/python bench/safety.py --real 500      # + flag rate on real patient questions (shared data)

The eval set (hand-written for this project, not copied from any dataset): one JSON object a line,
{"id", "label": 1 emergency / 0 routine, "split": "dev"|"test", "text": newest message,
 "context": [earlier user messages]}. Rules were tuned looking at the dev half only; the test half
is the held-out figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            assert r["label"] in (0, 1) and isinstance(r["text"], str)
        except Exception as exc:  # noqa: BLE001
            sys.exit(f"{path}:{n}: bad row ({exc!r}); each row needs text and label 0/1")
        rows.append(r)
    return rows


def score(rows: list[dict], preds: list[bool]) -> dict:
    tp = sum(1 for r, p in zip(rows, preds) if r["label"] == 1 and p)
    fn = sum(1 for r, p in zip(rows, preds) if r["label"] == 1 and not p)
    fp = sum(1 for r, p in zip(rows, preds) if r["label"] == 0 and p)
    tn = sum(1 for r, p in zip(rows, preds) if r["label"] == 0 and not p)
    return {"n": len(rows), "pos": tp + fn, "neg": fp + tn, "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "recall": tp / max(1, tp + fn), "precision": tp / max(1, tp + fp), "fpr": fp / max(1, fp + tn)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE / "data" / "safety_eval.jsonl"))
    ap.add_argument("--errors", action="store_true", help="print every miss / false alarm")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (uncached)")
    ap.add_argument("--real", type=int, default=0,
                    help="also triage the first N real patient questions of shared data huatuo26m_qa/dev "
                         "and print how many are flagged (unlabelled; flagged ones are printed with --errors)")
    args = ap.parse_args(argv)

    from ming.safety import SafetyPolicy
    from ming.safety.triage import default_triage

    tri = default_triage()
    rows = load(Path(args.data))
    results = [tri.check(r["text"], r.get("context") or []) for r in rows]
    preds = [res.emergency for res in results]

    print(f"triage on {args.data} ({len(rows)} items: {sum(r['label'] for r in rows)} emergency, "
          f"{sum(1 - r['label'] for r in rows)} routine)")
    print(f"{'split':<6} {'n':>4} {'pos':>4} {'neg':>4} {'TP':>4} {'FN':>4} {'FP':>4} "
          f"{'recall':>7} {'precision':>9} {'FPR':>6}")
    for split in ("dev", "test", None):
        idx = [i for i, r in enumerate(rows) if split is None or r.get("split") == split]
        s = score([rows[i] for i in idx], [preds[i] for i in idx])
        print(f"{split or 'all':<6} {s['n']:>4} {s['pos']:>4} {s['neg']:>4} {s['tp']:>4} {s['fn']:>4} {s['fp']:>4} "
              f"{s['recall']:>7.3f} {s['precision']:>9.3f} {s['fpr']:>6.3f}")
    if args.errors:
        for r, res in zip(rows, results):
            if bool(r["label"]) != res.emergency:
                kind = "MISS " if r["label"] else "FALSE"
                ctx = " | ".join(r.get("context") or [])
                print(f"  {kind} [{r['split']}] {r['id']}: {(ctx + ' || ') if ctx else ''}{r['text']}  {res.rule_ids}")

    # ---- speed: every message analysed from scratch (per-message cache cleared) ----------
    policy = SafetyPolicy(mode="on")
    convs = []
    for r in rows:
        msgs = [{"role": "system", "content": "你是医疗助手"}]
        for c in r.get("context") or []:
            msgs += [{"role": "user", "content": c}, {"role": "assistant", "content": "请再说说具体情况。"}]
        msgs.append({"role": "user", "content": r["text"]})
        convs.append(msgs)
    t_tri, t_pol = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for r in rows:
            tri._analyse.cache_clear()
            tri.check(r["text"], r.get("context") or [])
        t_tri.append((time.perf_counter() - t0) / len(rows))
        t0 = time.perf_counter()
        for m in convs:
            tri._analyse.cache_clear()
            policy.check(m)
        t_pol.append((time.perf_counter() - t0) / len(rows))
    report_text = (HERE.parent / "tests" / "fixtures" / "safety" / "reports" / "01_ming_showcase.txt")
    t_rep = []
    if report_text.is_file():
        msg = [{"role": "user", "content": "帮我看看体检报告：" + report_text.read_text(encoding="utf-8")}]
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(50):
                tri._analyse.cache_clear()
                policy.check(msg)
            t_rep.append((time.perf_counter() - t0) / 50)
    worst = 0.0
    for m in convs:
        tri._analyse.cache_clear()
        t0 = time.perf_counter()
        policy.check(m)
        worst = max(worst, time.perf_counter() - t0)
    print(f"speed (uncached, median of {args.repeat} rounds): triage {statistics.median(t_tri) * 1e3:.3f} ms/message; "
          f"SafetyPolicy.check {statistics.median(t_pol) * 1e3:.3f} ms/message (worst single {worst * 1e3:.2f} ms)"
          + (f"; with the showcase lab report pasted {statistics.median(t_rep) * 1e3:.3f} ms/message" if t_rep else "")
          + "  [target < 5 ms]")

    if args.real:
        from ming.envs import data_dir

        d = data_dir()
        path = d / "huatuo26m_qa" / "dev.jsonl" if d else None
        if not path or not path.is_file():
            print("real questions: skipped (no shared data; set MING_DATA_DIR)")
        else:
            qs = [json.loads(x)["question"] for x in path.read_text(encoding="utf-8").splitlines()[: args.real]]
            flagged = [(q, tri.check(q)) for q in qs]
            flagged = [(q, res) for q, res in flagged if res.emergency]
            print(f"real patient questions (huatuo26m_qa/dev, unlabelled): {len(flagged)}/{len(qs)} flagged "
                  f"({len(flagged) / max(1, len(qs)):.1%})")
            if args.errors:
                for q, res in flagged:
                    print(f"  FLAG {res.rule_ids}: {q[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
