"""The model yes/no judge (ming.safety.model_triage) on the presentation-labelled triage set: scores cached
under runs/triage_model/ (gitignored), thresholds chosen leave-presentation-out, and the lines bench/safety.py
prints next to the rules.

    nice -n 19 .venv/bin/python bench/triage_model.py --model 1.5b                # score every message (resumable)
    nice -n 19 .venv/bin/python bench/triage_model.py --model 0.5b --limit 200    # the first 200 of the seeded order
    .venv/bin/python bench/triage_model.py --compare v1 v2 --model 1.5b --only triage_set --limit 100

Messages are scored in one seeded random order (`--seed`), so a run stopped early (or `--limit N`) has scored
a uniform random subsample; every figure states how many messages it rests on. The cache file is named by the
model (its file name and size) and the prompt's hash, one JSON line per message keyed by its id and a hash of
its text, so a prompt change or a model change never reuses old scores.

Threshold choice (the model is never tuned on the set, only a threshold is chosen):
* plain: the lowest threshold whose FPR on the whole scored set is <= --max-fpr (fit on the test data: an
  upper bound);
Lines: "plain" = packaged rules / threshold fit on all scored messages; "lpo" = leave-presentation-out (rules
without the entries tuned on the held-out presentation, threshold chosen on the other presentations);
"no-generic" = the leave-out rules without their generic layer, which was written after the previous leave-out
misses had been read (docs/triage.md): closer to what the rules catch on text nobody tuned them on (the held-out
set: 0.829 recall with the layer, 0.805 without).
* leave-presentation-out: for each presentation, the lowest threshold whose FPR on the *other* presentations'
  messages is <= --max-fpr, applied to the held-out presentation's messages. For `rules OR model` the FPR on the
  other presentations is that of the combination with the rules' own leave-presentation-out predictions (rules
  as they behave on text they were not tuned on), so the model is given only the false-alarm budget the rules
  leave.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
RUNS = HERE.parent / "runs" / "triage_model"


def _text_key(r: dict) -> str:
    return hashlib.sha256(json.dumps([r["text"], r.get("context") or []], ensure_ascii=False).encode()).hexdigest()[:12]


def model_key(spec: str) -> str:
    """The model's file name and size (a re-quantised or retrained file gets a new cache)."""
    from ming import models

    ref = models.resolve(spec)
    path = ref.path if ref.kind != "lora" else ref.base.path
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{ref.display.replace('/', '_')}-{size}"


def cache_file(spec: str, prompt: str) -> Path:
    from ming.safety.model_triage import prompt_hash

    return RUNS / f"{model_key(spec)}-{prompt}-{prompt_hash(prompt)}.jsonl"


def order(rows: Sequence[dict], seed: int) -> list[int]:
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    return idx


def read_cache(path: Path) -> dict[tuple[str, str], dict]:
    out = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out[(d["id"], d["key"])] = d
    return out


def score(rows: Sequence[dict], spec: str, prompt: str, *, limit: int | None = None, seed: int = 0,
          threads: int = 2, only: str | None = None, quiet: bool = False) -> dict[int, dict]:
    """{row index: {"p_yes", "seconds"}} for the first `limit` rows of the seeded order (those whose id starts
    with `only`'s prefix when given), scoring the ones not cached yet and appending them to the cache."""
    path = cache_file(spec, prompt)
    cached = read_cache(path)
    want = [i for i in order(rows, seed) if only is None or _in(rows[i], only)]
    if limit is not None:
        want = want[:limit]
    todo = [i for i in want if (rows[i]["id"], _text_key(rows[i])) not in cached]
    if todo:
        from ming.config import ModelOptions
        from ming.engine import select
        from ming.safety.model_triage import ModelTriage

        eng = select.create(ModelOptions(model_path=spec, backend="llamacpp", threads=threads))
        judge = ModelTriage(eng, prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with path.open("a", encoding="utf-8") as f:
            for n, i in enumerate(todo, 1):
                r = rows[i]
                v = judge.score(r["text"], r.get("context") or [])
                d = {"id": r["id"], "key": _text_key(r), "p_yes": v.p_yes, "seconds": v.seconds,
                     "prompt_tokens": v.prompt_tokens}
                f.write(json.dumps(d) + "\n")
                f.flush()
                cached[(d["id"], d["key"])] = d
                if not quiet and (n % 25 == 0 or n == len(todo)):
                    print(f"[triage_model] {spec} {prompt}: {n}/{len(todo)} scored "
                          f"({(time.perf_counter() - t0) / n:.2f} s/message)", file=sys.stderr)
        eng.close()
    return {i: cached[(rows[i]["id"], _text_key(rows[i]))] for i in want
            if (rows[i]["id"], _text_key(rows[i])) in cached}


def _in(r: dict, only: str) -> bool:
    """`only`: "triage_set" (ids without the F- prefix) or "fresh_set" (F-)."""
    return r["id"].startswith("F-") == (only == "fresh_set")


# -- thresholds -------------------------------------------------------------------------------------------
def lowest_threshold(labels: Sequence[int], p: Sequence[float], base: Sequence[bool], max_fpr: float) -> float:
    """The lowest threshold t such that FPR of (base OR p >= t) over these rows is <= max_fpr (1.01 = never)."""
    neg = [(pi, b) for li, pi, b in zip(labels, p, base) if not li]
    budget = int(max_fpr * len(neg) + 1e-9) - sum(1 for _, b in neg if b)
    if budget < 0:
        return 1.01
    free = sorted((pi for pi, b in neg if not b), reverse=True)  # negatives the threshold alone decides
    if budget >= len(free):
        return 0.0
    cut = free[budget]  # the (budget+1)-th highest: t must lie above it
    return min(1.01, cut + 1e-9)


def lpo_predictions(rows: Sequence[dict], p: Sequence[float], base: Sequence[bool],
                    max_fpr: float) -> tuple[list[bool], dict[str, float]]:
    """base OR p >= t_pid, t_pid chosen on the other presentations' rows."""
    out, chosen = [False] * len(rows), {}
    for pid in sorted({r["presentation"] for r in rows}):
        train = [i for i, r in enumerate(rows) if r["presentation"] != pid]
        t = lowest_threshold([rows[i]["label"] for i in train], [p[i] for i in train], [base[i] for i in train],
                             max_fpr)
        chosen[pid] = t
        for i, r in enumerate(rows):
            if r["presentation"] == pid:
                out[i] = base[i] or p[i] >= t
    return out, chosen


def beyond_rules(judge, tri, qs: Sequence[str], by_rule) -> tuple[list, list]:
    """A model step asked as chat asks it (where no rule fired and the question is not education, asks_model) on
    unlabelled questions: the (question, verdict) pairs asked, and those that fired."""
    from ming.safety.policy import asks_model

    verdicts = [(q, judge.assess([q])) for q in qs if q not in by_rule and asks_model(tri, [q])]
    return verdicts, [(q, v) for q, v in verdicts if v.fired]


def auc(labels: Sequence[int], p: Sequence[float]) -> float:
    pos = [x for x, y in zip(p, labels) if y]
    neg = [x for x, y in zip(p, labels) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def model_lines(rows: list[dict], scores: dict[int, dict], rules_plain: Sequence[bool], rules_lpo: Sequence[bool],
                rules_nogen: Sequence[bool] | None = None,
                max_fpr: float = 0.05) -> tuple[list[dict], dict[str, list[bool]], list[str]]:
    """The scored rows, their predictions per method (model alone / rules OR model, plain and leave-out) and
    notes (thresholds, AUC, a sweep)."""
    idx = sorted(scores)
    sub = [rows[i] for i in idx]
    p = [scores[i]["p_yes"] for i in idx]
    rp = [rules_plain[i] for i in idx]
    rl = [rules_lpo[i] for i in idx]
    labels = [r["label"] for r in sub]
    none = [False] * len(sub)
    t_model = lowest_threshold(labels, p, none, max_fpr)
    t_comb = lowest_threshold(labels, p, rp, max_fpr)
    lpo_model, ch_model = lpo_predictions(sub, p, none, max_fpr)
    lpo_comb, ch_comb = lpo_predictions(sub, p, rl, max_fpr)
    preds = {
        "rules, leave-out": rl,
        "model alone, plain": [x >= t_model for x in p],
        "model alone, lpo": lpo_model,
        "rules OR model, plain": [a or x >= t_comb for a, x in zip(rp, p)],
        "rules OR model, lpo": lpo_comb,
    }
    if rules_nogen is not None:  # the rules before their generic layer: about what they catch on unseen text
        rn = [rules_nogen[i] for i in idx]
        preds["rules no-generic, lpo"] = rn
        preds["no-generic OR model, lpo"] = lpo_predictions(sub, p, rn, max_fpr)[0]
    secs = sorted(scores[i]["seconds"] for i in idx)
    kinds = sorted({r["kind"] for r in sub if not r["label"]})
    by_kind = ", ".join(f"{k} {sum(lpo_model[j] for j, r in enumerate(sub) if r['kind'] == k)}/"
                        f"{sum(lpo_comb[j] for j, r in enumerate(sub) if r['kind'] == k)}/"
                        f"{sum(r['kind'] == k for r in sub)}" for k in kinds)
    notes = [
        f"model AUC {auc(labels, p):.3f}; plain thresholds (fit on these messages): model alone {t_model:.3f}, "
        f"rules OR model {t_comb:.3f}; leave-out thresholds over {len(ch_model)} folds: model alone "
        f"{min(ch_model.values()):.3f}-{max(ch_model.values()):.3f} "
        f"(median {statistics.median(ch_model.values()):.3f}), "
        f"rules OR model {min(ch_comb.values()):.3f}-{max(ch_comb.values()):.3f} "
        f"(median {statistics.median(ch_comb.values()):.3f})",
        f"hard negatives by kind, false alarms with leave-out thresholds (model alone / rules(lpo) OR model / n): "
        f"{by_kind}",
        f"latency per message (render + one prefill, prefix cache warm): median {statistics.median(secs):.2f} s, "
        f"p95 {secs[min(len(secs) - 1, int(0.95 * len(secs)))]:.2f} s, max {secs[-1]:.2f} s "
        f"(n={len(secs)}; shared 2-core machine, nice 19)",
    ]
    sweep = []
    for t in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        m = [x >= t for x in p]
        c = [a or b for a, b in zip(rl, m)]
        pos, neg = sum(labels), len(labels) - sum(labels)
        sweep.append(f"t={t}: model {sum(a and y for a, y in zip(m, labels)) / max(1, pos):.3f}/"
                     f"{sum(a and not y for a, y in zip(m, labels)) / max(1, neg):.3f}, rules(lpo) OR model "
                     f"{sum(a and y for a, y in zip(c, labels)) / max(1, pos):.3f}/"
                     f"{sum(a and not y for a, y in zip(c, labels)) / max(1, neg):.3f}")
    notes.append("recall/FPR at fixed thresholds: " + "; ".join(sweep))
    return sub, preds, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model to load (as `ming chat --model-path`): 1.5b, 0.5b, a .gguf")
    ap.add_argument("--prompt", default=None, help="prompt variant of ming.safety.model_triage.PROMPTS (default: its "
                                                   "DEFAULT_PROMPT)")
    ap.add_argument("--compare", nargs="+", default=None, metavar="PROMPT",
                    help="score these prompt variants on the same messages and print AUC and the leave-out lines")
    ap.add_argument("--set", nargs="+", default=[str(HERE / "data" / "triage" / "triage_set.jsonl"),
                                                 str(HERE / "data" / "triage" / "fresh_set.jsonl")])
    ap.add_argument("--only", choices=("triage_set", "fresh_set"), default=None,
                    help="score only the messages of one file (prompt selection uses triage_set)")
    ap.add_argument("--limit", type=int, default=None, help="score the first N messages of the seeded order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-fpr", type=float, default=0.05)
    args = ap.parse_args(argv)

    import yaml

    from safety import load, presentation_report
    from ming.safety import model_triage
    from ming.safety.triage import Triage, default_triage

    rows = [r for f in args.set for r in load(Path(f))]
    rules_path = Path(sys.modules["ming.safety.triage"].__file__).parent / "rules" / "triage.yaml"
    spec = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    tri = default_triage()
    plain = [tri.check(r["text"], r.get("context") or []).emergency for r in rows]
    lpo, nogen = [False] * len(rows), [False] * len(rows)
    for pid in sorted({r["presentation"] for r in rows}):
        held = Triage(spec, str(rules_path), exclude={pid})
        held_nogen = Triage(spec, str(rules_path), exclude={pid}, layers_off={"generic"})
        for i, r in enumerate(rows):
            if r["presentation"] == pid:
                lpo[i] = held.check(r["text"], r.get("context") or []).emergency
                nogen[i] = held_nogen.check(r["text"], r.get("context") or []).emergency
    for prompt in args.compare or [args.prompt or model_triage.DEFAULT_PROMPT]:
        sc = score(rows, args.model, prompt, limit=args.limit, seed=args.seed, threads=args.threads, only=args.only)
        sub, preds, notes = model_lines(rows, sc, plain, lpo, nogen, args.max_fpr)
        print(f"\nmodel {args.model}, prompt {prompt} ({model_triage.prompt_hash(prompt)}): {len(sub)} messages "
              f"({sum(r['label'] for r in sub)} emergency, {sum(1 - r['label'] for r in sub)} hard negatives)")
        presentation_report(sub, preds, False)
        for n in notes:
            print(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
