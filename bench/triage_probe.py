"""A linear probe on a small model's hidden state as a triage classifier, measured across writers.

    .venv/bin/python bench/triage_probe.py                     # features of every labelled message (0.5B), then the figures
    .venv/bin/python bench/triage_probe.py --lam 10,100        # other ridge strengths (features are cached)
    .venv/bin/python bench/triage_probe.py --lpo               # + leave-presentation-out over every set pooled
    .venv/bin/python bench/triage_probe.py --save src/ming/safety/tables/triage_probe.json   # the packaged probe
    .venv/bin/python bench/triage_probe.py --latency 100       # the runtime step: load time, memory, s a message

Why: rules written from one writer's phrasings do not carry to another writer's (docs/triage.md, round 10:
held-out recall 0.75 with FPR 0.07). A probe reads what the model makes of the whole message instead of
phrases. This script measures whether that generalises, and trains the probe ming ships
(ming.safety.probe_triage: `--save`; bench/safety.py --probe prints its lines next to the rules').

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
  `rules OR probe`: the FPR of the combination there with the rules' leave-presentation-out predictions, the
  rule the packaged probe's threshold follows). The rules column is the
  packaged rules, which were tuned on some of these sets (triage_set, fresh, probe8, probe9a, probe10a):
  on those its figure is an upper bound; holdout, holdout3, holdout4, probe9b and probe10b were never tuned on.
* --lpo: each presentation's messages (from every set) scored by a probe trained without them; one threshold
  for the pooled scores.
* --save: the probe trained on every set; its threshold is the lowest whose FPR of `rules OR probe` is
  <= --max-fpr on presentation-grouped 5-fold out-of-fold scores, with the rules as they behave on text they were
  not tuned on (leave-presentation-out), so the probe gets only the false-alarm budget the rules leave.
The model step is asked only where ming asks it (ming.safety.policy.asks_model: not about health-education
questions or figurative use); elsewhere its p counts as 0 in every figure here.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
from safety import load, wilson  # bench/safety.py and bench/triage_model.py, next to this script
from triage_model import auc, lowest_threshold as threshold, lpo_predictions

from ming.safety.probe_triage import MODEL, Probe, fit, predict, wrap

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT / "bench" / "data" / "triage"


def load_rows() -> list[dict]:
    rows = []
    for f in sorted(SETS.glob("*_set.jsonl")):
        for r in load(f):  # bench/safety.py's reader: a bad row stops with its file:line
            r["set"] = f.name.removesuffix("_set.jsonl")
            rows.append(r)
    return rows


def model_file(model: str) -> Path:
    from ming.models import embedded

    return Path(model) if model.endswith(".gguf") else embedded.ensure_gguf(embedded.get(model), show_progress=False)


def features(rows: list[dict], model: str = MODEL, threads: int = 2) -> np.ndarray:
    """The feature vector of every row (cached under runs/triage_probe/, keyed by model file and wrapped text)."""
    from ming.safety.probe_triage import Embedder

    path = model_file(model)
    key = hashlib.sha256(f"{path.name}|{path.stat().st_size}|v1".encode()).hexdigest()[:12]
    cache = ROOT / "runs" / "triage_probe" / f"{path.stem}-{key}.npz"
    have: dict[str, np.ndarray] = {}
    if cache.exists():
        d = np.load(cache)
        have = {str(k): v for k, v in zip(d["key"], d["X"])}
    texts = [wrap(r["text"], r.get("context") or []) for r in rows]
    keys = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        emb = Embedder(path, threads)  # the runtime's own embedding context (ming.safety.probe_triage)
        t0 = time.perf_counter()
        for j, i in enumerate(todo, 1):
            have[keys[i]] = emb.embed(texts[i]).astype(np.float32)
            if j % 200 == 0 or j == len(todo):
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, key=np.array(list(have)), X=np.stack(list(have.values())))
                print(f"features {j}/{len(todo)}, {(time.perf_counter() - t0) / j:.2f} s a message", file=sys.stderr)
    return np.stack([have[k] for k in keys]).astype(np.float64)


def asked(rows: list[dict], tri) -> np.ndarray:
    """Where ming asks a model step at all (ming.safety.policy.asks_model); elsewhere p counts as 0."""
    from ming.safety.policy import asks_model

    return np.array([asks_model(tri, list(r.get("context") or []) + [r["text"]]) for r in rows])


def rules_lpo(rows: list[dict], rules_path: Path | None = None) -> np.ndarray:
    """The rules on each presentation's messages compiled without the entries tuned on it (bench/safety.py)."""
    import yaml

    from ming.safety.triage import Triage

    path = rules_path or ROOT / "src" / "ming" / "safety" / "rules" / "triage.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = np.zeros(len(rows), bool)
    for pid in sorted({r["presentation"] for r in rows}):
        held = Triage(spec, str(path), exclude={pid})
        for i, r in enumerate(rows):
            if r["presentation"] == pid:
                out[i] = held.check(r["text"], r.get("context") or []).emergency
    return out


def group_folds(groups: np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """A fold number per row, whole groups (presentations) per fold."""
    names = sorted(set(groups.tolist()))
    fold_of = dict(zip(names, np.random.default_rng(seed).permutation(len(names)) % k))
    return np.array([fold_of[g] for g in groups])


def out_of_fold(score, idx: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """p for the rows `idx`, each fold scored by `score(train_rows, test_rows)` fitted on the other folds."""
    oof = np.zeros(len(idx))
    for f in sorted(set(folds.tolist())):
        oof[folds == f] = score(idx[folds != f], idx[folds == f])
    return oof


def grouped_oof(X: np.ndarray, y: np.ndarray, groups: np.ndarray, lam: float, k: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold p with whole groups (presentations) per fold."""
    return out_of_fold(lambda tr, te: predict(fit(X[tr], y[tr], lam), X[te]), np.arange(len(y)),
                       group_folds(groups, k, seed))


def lpo_scores(X: np.ndarray, y: np.ndarray, pres: np.ndarray, lam: float) -> np.ndarray:
    """Each presentation's messages scored by a probe trained without any of them (~1 s a fit)."""
    p = np.zeros(len(y))
    for pid in sorted(set(pres.tolist())):
        te = pres == pid
        p[te] = predict(fit(X[~te], y[~te], lam), X[te])
    return p


def train(rows: list[dict], X: np.ndarray, gate: np.ndarray, base: np.ndarray, lam: float, max_fpr: float,
          model: str = MODEL) -> Probe:
    """The probe on every row, its threshold from presentation-grouped out-of-fold scores (see the docstring)."""
    y = np.array([r["label"] for r in rows])
    oof = grouped_oof(X, y, np.array([r["presentation"] for r in rows]), lam) * gate
    t = threshold(y.tolist(), oof.tolist(), base.tolist(), max_fpr)
    w, b = fit(X, y, lam)
    path = model_file(model)
    sets: dict[str, int] = {}
    for r in rows:
        sets[r["set"]] = sets.get(r["set"], 0) + 1
    prov = {"trained": datetime.date.today().isoformat(), "by": "bench/triage_probe.py --save",
            "sets": {k: sets[k] for k in sorted(sets)}, "messages": len(rows), "emergencies": int(y.sum()),
            "presentations": len({r["presentation"] for r in rows}),
            "threshold_rule": f"lowest p with FPR of (rules, leave-presentation-out) OR probe <= {max_fpr} on "
                              "presentation-grouped 5-fold out-of-fold scores",
            "max_fpr": max_fpr, "oof_auc": round(auc(y.tolist(), oof.tolist()), 4),
            "features": "last-token hidden state, llama.cpp embedding mode (pooling LAST), "
                        "of ming.safety.probe_triage.wrap(message)"}
    return Probe(w, b, float(min(t, 1.0)), path.name, path.stat().st_size, lam, prov)


def line(name: str, y: np.ndarray, pred: np.ndarray) -> str:
    k, n = int((pred & (y == 1)).sum()), int((y == 1).sum())
    fp, nn = int((pred & (y == 0)).sum()), int((y == 0).sum())
    lo, hi = wilson(k, n)
    flo, fhi = wilson(fp, nn)
    return (f"  {name:15s} recall {k / n:.3f} ({k}/{n}, {lo:.3f}-{hi:.3f})  "
            f"FPR {fp / max(nn, 1):.3f} ({fp}/{nn}, {flo:.3f}-{fhi:.3f})")


def leave_one_set_out(rows, X, y, gate, rules, lam, max_fpr, base=None, out=print) -> dict[str, np.ndarray]:
    """Each set scored by a probe trained on the others, its threshold chosen on their out-of-fold scores. `base`:
    the rules the OR threshold leaves the budget of (default `rules`; the packaged probe's rule: the rules'
    leave-presentation-out predictions)."""
    base = rules if base is None else base
    sets = np.array([r["set"] for r in rows])
    rng = np.random.default_rng(0)
    preds = {"probe": np.zeros(len(y), bool), "rules OR probe": np.zeros(len(y), bool)}
    for s in sorted(set(sets)):
        te = sets == s
        idx = np.where(~te)[0]
        oof = out_of_fold(lambda tr, te: predict(fit(X[tr], y[tr], lam), X[te]), idx,
                          rng.integers(0, 5, len(idx))) * gate[idx]
        t_p = threshold(y[idx], oof, np.zeros(len(idx), bool), max_fpr)
        t_or = threshold(y[idx], oof, base[idx], max_fpr)
        p = predict(fit(X[idx], y[idx], lam), X[te]) * gate[te]
        preds["probe"][te] = p >= t_p
        preds["rules OR probe"][te] = rules[te] | (p >= t_or)
        out(f"{s} ({te.sum()} messages) held out: probe AUC {auc(y[te], p):.3f}, thresholds {t_p:.3f} / {t_or:.3f}")
        for name, pred in (("rules", rules[te]), ("probe", preds["probe"][te]),
                           ("rules OR probe", preds["rules OR probe"][te])):
            out(line(name, y[te], pred))
    return preds


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


def latency(n: int, threads: int) -> int:
    from ming.safety.probe_triage import MAX_CHARS, ProbeTriage

    rows = load_rows()
    pick = np.random.default_rng(0).choice(len(rows), size=min(n, len(rows)), replace=False)
    rss0, t0 = _rss_mb(), time.perf_counter()
    judge = ProbeTriage(threads=threads)
    load_s, rss1 = time.perf_counter() - t0, _rss_mb()
    secs, toks = [], []
    for i in pick:
        r = rows[int(i)]
        v = judge.assess(list(r.get("context") or []) + [r["text"]])
        secs.append(v.seconds)
        toks.append(v.prompt_tokens)
    long = [judge.assess([("我最近总觉得胸口闷，" * 80)[:MAX_CHARS]]).seconds for _ in range(3)]
    q = np.percentile
    print(f"triage probe ({threads} threads): load {load_s:.2f} s, resident memory +{rss1 - rss0:.0f} MB "
          f"(+{_rss_mb() - rss0:.0f} MB after scoring); {len(secs)} labelled messages ({int(q(toks, 50))} tokens median, "
          f"{int(max(toks))} max): {q(secs, 50):.3f} s median, {q(secs, 95):.3f} s p95 a message; a {MAX_CHARS}-character "
          f"message (the most it reads): {np.median(long):.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=MODEL, help="embedded model name or a .gguf")
    ap.add_argument("--lam", default="30", help="L2 strengths, comma-separated")
    ap.add_argument("--max-fpr", type=float, default=0.04, help="FPR the thresholds aim at on training scores")
    ap.add_argument("--lpo", action="store_true", help="also leave-presentation-out over every set pooled")
    ap.add_argument("--save", default=None, metavar="PATH",
                    help="train the probe on every set (first --lam) and write it to PATH (the packaged one is "
                         "src/ming/safety/tables/triage_probe.json)")
    ap.add_argument("--latency", type=int, default=0, metavar="N",
                    help="time the packaged probe as chat / serve run it (ProbeTriage.assess) on N labelled messages "
                         "(seeded sample) and on a message of MAX_CHARS (200) characters; load time and resident memory")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.latency:
        return latency(args.latency, args.threads)

    from ming.safety.triage import default_triage

    rows = load_rows()
    X = features(rows, args.model, args.threads)
    y = np.array([r["label"] for r in rows])
    pres = np.array([r["presentation"] for r in rows])
    tri = default_triage()
    gate = asked(rows, tri)
    rules = np.array([tri.check(r["text"], r.get("context") or []).emergency for r in rows])
    lams = [float(x) for x in args.lam.split(",")]
    if args.save:
        probe = train(rows, X, gate, rules_lpo(rows), lams[0], args.max_fpr, args.model)
        print(f"probe trained on {len(rows)} messages ({probe.dims} weights, L2 {probe.lam:g}), threshold "
              f"{probe.threshold:.4f}, grouped out-of-fold AUC {probe.provenance['oof_auc']}: "
              f"{probe.save(args.save)}")
        return 0
    for lam in lams:
        print(f"\nprobe on {args.model} features ({X.shape[1]} dims), L2 {lam:g}; thresholds for FPR <= {args.max_fpr} "
              f"on out-of-fold training scores")
        preds = leave_one_set_out(rows, X, y, gate, rules, lam, args.max_fpr, base=rules_lpo(rows))
        print("all sets, each held out once:")
        for name, pred in (("rules", rules), ("probe", preds["probe"]), ("rules OR probe", preds["rules OR probe"])):
            print(line(name, y, pred))
        if args.lpo:
            p_all = lpo_scores(X, y, pres, lam) * gate
            r_lpo = rules_lpo(rows)
            print(f"leave-presentation-out, every set pooled ({len(set(pres))} presentations): AUC {auc(y, p_all):.3f}; "
                  f"each presentation's threshold chosen on the other presentations' scores")
            alone = np.array(lpo_predictions(rows, p_all.tolist(), [False] * len(rows), args.max_fpr)[0])
            both = np.array(lpo_predictions(rows, p_all.tolist(), r_lpo.tolist(), args.max_fpr)[0])
            for name, pred in (("rules (lpo)", r_lpo), ("probe", alone), ("rules OR probe", both)):
                print(line(name, y, pred))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
