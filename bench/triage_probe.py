"""A linear probe on a small model's hidden state as a triage classifier, measured across writers.

    .venv/bin/python bench/triage_probe.py                     # features of every labelled message (0.5B), then the figures
    .venv/bin/python bench/triage_probe.py --lam 10,100        # other ridge strengths (features are cached)
    .venv/bin/python bench/triage_probe.py --lpo               # + leave-presentation-out over every set pooled

Why: rules written from one writer's phrasings do not carry to another writer's (docs/triage.md, round 10:
held-out recall 0.75 with FPR 0.07). A probe reads what the model makes of the whole message instead of
phrases. This script asks whether that generalises, before anything of it ships.

Features: for every message of bench/data/triage/*_set.jsonl (ten sets, written at different times by
different writers, 3,286 messages), the last token's hidden state of the model (llama.cpp embedding mode,
pooling LAST) over the message (earlier user messages first, one per line) in a ChatML user turn followed by
the assistant header. The ChatML markers go through `Llama.embed`, which tokenizes them as text, not as control
tokens: a fixed wrapper either way, the same for every message. Cached under runs/triage_probe/ (gitignored),
keyed by model file and size; 0.5B: ~0.75 s a message on this 2-core machine (prefill is compute-bound).

Classifier: L2-regularised logistic regression on standardised features (Newton's method, numpy).

Figures (no threshold is ever chosen on the data it is tested on):
* leave-one-set-out, the cross-writer figure: for each set, the probe is trained on the nine others; its
  threshold is the lowest whose FPR, on 5-fold out-of-fold scores of those nine, is <= --max-fpr (for
  `rules OR probe`: the FPR of the combination with the packaged rules there). The rules column is the
  packaged rules, which were tuned on some of these sets (triage_set, fresh, probe8, probe9a, probe10a):
  on those its figure is an upper bound; holdout, holdout3, holdout4, probe9b and probe10b were never tuned on.
* --lpo: each presentation's messages (from every set) scored by a probe trained without them; one threshold
  for the pooled scores.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from safety import load, wilson  # bench/safety.py and bench/triage_model.py, next to this script
from triage_model import auc, lowest_threshold as threshold

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT / "bench" / "data" / "triage"


def load_rows() -> list[dict]:
    rows = []
    for f in sorted(SETS.glob("*_set.jsonl")):
        for r in load(f):  # bench/safety.py's reader: a bad row stops with its file:line
            r["set"] = f.name.removesuffix("_set.jsonl")
            rows.append(r)
    return rows


def wrapped(r: dict) -> str:
    body = "\n".join(list(r.get("context") or []) + [r["text"]])
    return f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"


def features(rows: list[dict], model: str, threads: int) -> np.ndarray:
    import llama_cpp

    from ming.models import embedded

    path = Path(model) if model.endswith(".gguf") else embedded.gguf_path(embedded.get(model))
    key = hashlib.sha256(f"{path.name}|{path.stat().st_size}|v1".encode()).hexdigest()[:12]
    cache = ROOT / "runs" / "triage_probe" / f"{path.stem}-{key}.npz"
    have: dict[str, np.ndarray] = {}
    if cache.exists():
        d = np.load(cache)
        have = {str(k): v for k, v in zip(d["key"], d["X"])}
    keys = [hashlib.sha256(wrapped(r).encode()).hexdigest()[:16] for r in rows]
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        llm = llama_cpp.Llama(model_path=str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST,
                              n_ctx=1024, n_batch=512, n_threads=threads, verbose=False)
        t0 = time.perf_counter()
        for j, i in enumerate(todo, 1):
            have[keys[i]] = np.asarray(llm.embed(wrapped(rows[i])), dtype=np.float32).reshape(-1)
            if j % 200 == 0 or j == len(todo):
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, key=np.array(list(have)), X=np.stack(list(have.values())))
                print(f"features {j}/{len(todo)}, {(time.perf_counter() - t0) / j:.2f} s a message", file=sys.stderr)
    return np.stack([have[k] for k in keys]).astype(np.float64)


def fit(X: np.ndarray, y: np.ndarray, lam: float):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    w = np.zeros(Z.shape[1])
    R = lam * np.eye(Z.shape[1])
    R[-1, -1] = 0.0
    for _ in range(30):
        p = 1 / (1 + np.exp(-np.clip(Z @ w, -40, 40)))
        step = np.linalg.solve((Z * (p * (1 - p))[:, None]).T @ Z + R, Z.T @ (p - y) + R @ w)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return mu, sd, w


def predict(m, X: np.ndarray) -> np.ndarray:
    mu, sd, w = m
    return 1 / (1 + np.exp(-np.clip(((X - mu) / sd) @ w[:-1] + w[-1], -40, 40)))


def line(name: str, y: np.ndarray, pred: np.ndarray) -> str:
    k, n = int((pred & (y == 1)).sum()), int((y == 1).sum())
    fp, nn = int((pred & (y == 0)).sum()), int((y == 0).sum())
    lo, hi = wilson(k, n)
    return f"  {name:15s} recall {k / n:.3f} ({k}/{n}, {lo:.3f}-{hi:.3f})  FPR {fp / max(nn, 1):.3f} ({fp}/{nn})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="0.5b", help="embedded model name or a .gguf")
    ap.add_argument("--lam", default="30", help="L2 strengths, comma-separated")
    ap.add_argument("--max-fpr", type=float, default=0.04, help="FPR the thresholds aim at on training scores")
    ap.add_argument("--lpo", action="store_true", help="also leave-presentation-out over every set pooled")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from ming.safety.triage import default_triage

    rows = load_rows()
    X = features(rows, args.model, args.threads)
    y = np.array([r["label"] for r in rows])
    sets = np.array([r["set"] for r in rows])
    pres = np.array([r["presentation"] for r in rows])
    tri = default_triage()
    rules = np.array([tri.check(r["text"], r.get("context") or []).emergency for r in rows])
    rng = np.random.default_rng(0)
    for lam in (float(x) for x in args.lam.split(",")):
        print(f"\nprobe on {args.model} features ({X.shape[1]} dims), L2 {lam:g}; thresholds for FPR <= {args.max_fpr} "
              f"on out-of-fold training scores")
        pooled = {"rules": [], "probe": [], "rules OR probe": []}
        for s in sorted(set(sets)):
            te = sets == s
            idx = np.where(~te)[0]
            folds = rng.integers(0, 5, len(idx))
            oof = np.zeros(len(idx))
            for f in range(5):
                oof[folds == f] = predict(fit(X[idx[folds != f]], y[idx[folds != f]], lam), X[idx[folds == f]])
            t_p = threshold(y[idx], oof, np.zeros(len(idx), bool), args.max_fpr)
            t_or = threshold(y[idx], oof, rules[idx], args.max_fpr)
            p = predict(fit(X[idx], y[idx], lam), X[te])
            print(f"{s} ({te.sum()} messages) held out: probe AUC {auc(y[te], p):.3f}, thresholds {t_p:.3f} / {t_or:.3f}")
            for name, pred in (("rules", rules[te]), ("probe", p >= t_p), ("rules OR probe", rules[te] | (p >= t_or))):
                print(line(name, y[te], pred))
                pooled[name].append((y[te], pred))
        print("all sets, each held out once:")
        for name, parts in pooled.items():
            print(line(name, np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])))
        if args.lpo:
            p_all = np.zeros(len(y))
            for pid in sorted(set(pres)):
                te = pres == pid
                p_all[te] = predict(fit(X[~te], y[~te], lam), X[te])
            t_p = threshold(y, p_all, np.zeros(len(y), bool), args.max_fpr)
            t_or = threshold(y, p_all, rules, args.max_fpr)
            print(f"leave-presentation-out, every set pooled ({len(set(pres))} presentations): AUC {auc(y, p_all):.3f}; "
                  f"one threshold on the pooled scores ({t_p:.3f} / {t_or:.3f}: chosen on the test scores, an upper bound)")
            for name, pred in (("rules", rules), ("probe", p_all >= t_p), ("rules OR probe", rules | (p_all >= t_or))):
                print(line(name, y, pred))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
