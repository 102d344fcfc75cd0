"""Benchmark the safety layer: triage recall / false-positive rate with 95% Wilson intervals on the
presentation-labelled set (plain and leave-presentation-out), the older 350-message set, and the time
per message of triage and of the whole SafetyPolicy.check (uncached, pure Python).

    .venv/bin/python bench/safety.py                 # all figures
    .venv/bin/python bench/safety.py --errors        # also list every miss and false alarm
    .venv/bin/python bench/safety.py --real 500      # + flag rate on real patient questions (shared data;
                                                     #   with --probe: the probe's too)
    .venv/bin/python bench/safety.py --coverage      # print the coverage table (markdown) for docs/triage.md
    nice -n 19 .venv/bin/python bench/safety.py --model 1.5b   # + the model's yes/no judge alone and OR the rules
    .venv/bin/python bench/safety.py --ngram                  # + the n-gram step (the default model step) over
                                                              #   all ten sets: leave-presentation-out and each
                                                              #   set held out (bench/triage_ngram.py; ~4 min)
    .venv/bin/python bench/safety.py --probe                  # + the triage probe over all ten sets (features
                                                              #   cached by bench/triage_probe.py; 42 min without)

Presentation-labelled set: bench/data/triage/triage_set.jsonl (see its README). "plain" runs the packaged
rules; "leave-presentation-out" tests each presentation's messages on rules compiled without every entry
tagged `tuned_on` only that presentation (an entry written for several presentations' messages would exist
had any one of them never been seen); "strict leave-out" drops every entry naming the held-out presentation;
"untuned" drops all tagged entries (the rules as derived from the coverage table, plus the untagged generic
layer); "leave-out, no generic" is leave-presentation-out with the rules marked `layer: generic` switched off.

The eval set (hand-written for this project, not copied from any dataset): one JSON object a line,
{"id", "label": 1 emergency / 0 routine, "split": "dev"|"test", "text": newest message,
 "context": [earlier user messages]}. Rules were tuned looking at the dev half only; the test half
is the held-out figure.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("adult", "paediatric", "obstetric", "psychiatric", "toxicological")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def _rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / max(1, n):.3f} [{lo:.3f}-{hi:.3f}] ({k}/{n})"


def presentation_report(rows: list[dict], preds: dict[str, list[bool]], errors: bool) -> None:
    """Recall / FPR with CIs per method (plain, leave-presentation-out, untuned), overall and per group."""
    print(f"{'method':<24} {'group':<14} {'recall [95% CI] (TP/pos)':<32} {'FPR [95% CI] (FP/neg)':<30}")
    for name, pr in preds.items():
        for g in (None,) + GROUPS:
            idx = [i for i, r in enumerate(rows) if g is None or r["group"] == g]
            tp = sum(1 for i in idx if rows[i]["label"] and pr[i])
            pos = sum(1 for i in idx if rows[i]["label"])
            fp = sum(1 for i in idx if not rows[i]["label"] and pr[i])
            neg = sum(1 for i in idx if not rows[i]["label"])
            print(f"{name if g is None else '':<24} {g or 'all':<14} {_rate(tp, pos):<32} {_rate(fp, neg):<30}")
    kinds = sorted({r["kind"] for r in rows if not r["label"]})
    lpo = preds.get("leave-presentation-out")
    if lpo is not None:
        print("hard negatives by kind (leave-presentation-out FPR): " + ", ".join(
            f"{k} {sum(lpo[i] for i, r in enumerate(rows) if r['kind'] == k)}/{sum(r['kind'] == k for r in rows)}"
            for k in kinds))
    if errors:
        for name, pr in preds.items():
            for r, p in zip(rows, pr):
                if bool(r["label"]) != p:
                    ctx = " | ".join(r.get("context") or [])
                    print(f"  {name[:10]:<10} {'MISS ' if r['label'] else 'FALSE'} {r['id']}: "
                          f"{(ctx + ' || ') if ctx else ''}{r['text']}")


def coverage_markdown(cov: list[dict], rows: list[dict], lpo: list[bool], fired: list[list[str]]) -> str:
    by_p: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_p[r["presentation"]].append(i)
    out = ["| id | group | presentation | sources | red-flag discriminators | rules | rules that fired on its messages "
           "| messages (emergency / hard negative) | leave-out: caught · false alarms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for p in cov:
        idx = by_p.get(p["id"], [])
        e = [i for i in idx if rows[i]["label"]]
        n = [i for i in idx if not rows[i]["label"]]
        out.append(f"| {p['id']} | {p['group']} | {p['name']} | {p['sources']} | {p['discriminators']} | "
                   f"{', '.join(p['rules'])} | {', '.join(sorted({x for i in e for x in fired[i]})) or '—'} | "
                   f"{len(e)} / {len(n)} | "
                   f"{sum(lpo[i] for i in e)}/{len(e)} · {sum(lpo[i] for i in n)} |")
    return "\n".join(out)


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



def education_gate(scores: dict, rows: list, tri) -> dict:
    """The model step as the safety policy and `ming triage` run it (ming.safety.policy.asks_model): not asked
    (p = 0) when the message and its context are all health-education questions."""
    from ming.safety.policy import asks_model

    out = {}
    for i, sc in scores.items():
        r = rows[i]
        out[i] = sc if asks_model(tri, list(r.get("context") or []) + [r["text"]]) else {**sc, "p_yes": 0.0}
    return out


def probe_report(tri, rules_path: Path, errors: bool) -> None:
    """The triage probe's lines over all ten labelled sets, next to the rules' (bench/triage_probe.py)."""
    import numpy as np
    import triage_model
    import triage_probe as tp

    from ming.safety.probe_triage import Probe, predict

    probe = Probe.load()
    rows = tp.load_rows()
    X = tp.features(rows)
    y = np.array([r["label"] for r in rows])
    pres = np.array([r["presentation"] for r in rows])
    gate = tp.asked(rows, tri)
    rules = np.array([tri.check(r["text"], r.get("context") or []).emergency for r in rows])
    r_lpo = tp.rules_lpo(rows, rules_path)
    max_fpr = float(probe.provenance.get("max_fpr", 0.04))
    p_ship = predict((probe.weights, probe.bias), X) * gate
    p_lpo = tp.lpo_scores(X, y, pres, probe.lam) * gate
    none = [False] * len(rows)
    alone = triage_model.lpo_predictions(rows, p_lpo.tolist(), none, max_fpr)[0]
    both = triage_model.lpo_predictions(rows, p_lpo.tolist(), r_lpo.tolist(), max_fpr)[0]
    print(f"\ntriage probe on all {len(set(r['set'] for r in rows))} labelled sets ({len(rows)} messages: {int(y.sum())} "
          f"emergency over {len(set(pres))} presentations, {int((1 - y).sum())} hard negatives); packaged threshold "
          f"{probe.threshold:.3f}; leave-out thresholds for FPR <= {max_fpr} on the other presentations; probe AUC "
          f"leave-presentation-out {triage_model.auc(y.tolist(), p_lpo.tolist()):.3f}")
    presentation_report(rows, {"rules, plain": rules.tolist(),
                               "as shipped (fit on these)": (rules | (p_ship >= probe.threshold)).tolist(),
                               "rules, leave-out": r_lpo.tolist(), "probe alone, leave-out": alone,
                               "rules OR probe, lpo": both}, errors)
    print("leave-one-set-out (a probe trained on the other nine sets, thresholds chosen on them as for the packaged "
          "probe; the rules as packaged):")
    preds = tp.leave_one_set_out(rows, X, y, gate, rules, probe.lam, max_fpr, base=r_lpo)
    print("all sets, each held out once:")
    for name, pred in (("rules", rules), ("probe", preds["probe"]), ("rules OR probe", preds["rules OR probe"])):
        print(tp.line(name, y, pred))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE / "data" / "safety_eval.jsonl"), help="the older 350-message set")
    ap.add_argument("--set", nargs="+", default=[str(HERE / "data" / "triage" / "triage_set.jsonl"),
                                                 str(HERE / "data" / "triage" / "fresh_set.jsonl")],
                    help="presentation-labelled set file(s), scored together (leave-presentation-out)")
    ap.add_argument("--holdout", nargs="+", default=[str(HERE / "data" / "triage" / "holdout_set.jsonl"),
                                                     str(HERE / "data" / "triage" / "holdout3_set.jsonl"),
                                                     str(HERE / "data" / "triage" / "holdout4_set.jsonl"),
                                                     str(HERE / "data" / "triage" / "probe9b_set.jsonl"),
                                                     str(HERE / "data" / "triage" / "probe10b_set.jsonl")],
                    help="presentation-labelled set(s) never tuned on; each scored on its own with the packaged rules")
    ap.add_argument("--rules", default=None, help="a triage rule YAML instead of the packaged one")
    ap.add_argument("--coverage", action="store_true", help="print the coverage table as markdown and stop")
    ap.add_argument("--errors", action="store_true", help="print every miss / false alarm")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (uncached)")
    ap.add_argument("--real", type=int, default=0,
                    help="also triage the first N real patient questions of shared data huatuo26m_qa/dev "
                         "and print how many are flagged (unlabelled; flagged ones are printed with --errors)")
    ap.add_argument("--model", default=None,
                    help="also score the set with this model's yes/no judge (ming.safety.model_triage; 1.5b, 0.5b, a "
                         ".gguf) and print model-alone and rules-OR-model lines, plain and leave-presentation-out "
                         "(scores cached under runs/triage_model/; bench/triage_model.py scores them resumably)")
    ap.add_argument("--prompt", default=None, help="the judge's prompt variant (ming.safety.model_triage.PROMPTS)")
    ap.add_argument("--model-limit", type=int, default=None,
                    help="score only the first N messages of the seeded order (a random subsample)")
    ap.add_argument("--ngram", action="store_true",
                    help="also the n-gram step (ming.safety.ngram_triage, on by default in chat / serve / ming triage) "
                         "over every labelled set in bench/data/triage/: leave-presentation-out (vocabulary, weights "
                         "and threshold fitted without the presentation) and each set held out in turn (the "
                         "cross-writer figure); with --real N, its false alarms on real questions too")
    ap.add_argument("--probe", action="store_true",
                    help="also the triage probe (ming.safety.probe_triage) over every labelled set in "
                         "bench/data/triage/: as shipped (trained on them: an upper bound), leave-presentation-out "
                         "(a probe trained without the presentation, its threshold chosen on the others) and "
                         "leave-one-set-out (a probe trained without the set: the cross-writer figure)")
    ap.add_argument("--model-holdout", action="store_true",
                    help="also score the held-out set with the judge at the thresholds chosen on the labelled set "
                         "(for whoever scores held-out sets; never used to choose a prompt or threshold)")
    args = ap.parse_args(argv)

    import yaml

    from ming.safety import SafetyPolicy
    from ming.safety.triage import Triage, default_triage

    rules_path = Path(args.rules) if args.rules else Path(sys.modules["ming.safety"].__file__).parent / "rules" / "triage.yaml"
    spec = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    tri = Triage(spec, str(rules_path)) if args.rules else default_triage()

    # ---- presentation-labelled set: plain / leave-presentation-out / untuned --------------------
    prow = [r for f in args.set for r in load(Path(f))]
    pids = sorted({r["presentation"] for r in prow})
    plain_res = [tri.check(r["text"], r.get("context") or []) for r in prow]
    plain = [x.emergency for x in plain_res]
    lpo, strict, lpo_nogen = [False] * len(prow), [False] * len(prow), [False] * len(prow)
    for pid in pids:
        held = Triage(spec, str(rules_path), exclude={pid})
        held_nogen = Triage(spec, str(rules_path), exclude={pid}, layers_off={"generic"})
        held_strict = Triage(spec, str(rules_path), exclude={pid}, strict=True)
        for i, r in enumerate(prow):
            if r["presentation"] == pid:
                lpo[i] = held.check(r["text"], r.get("context") or []).emergency
                strict[i] = held_strict.check(r["text"], r.get("context") or []).emergency
                lpo_nogen[i] = held_nogen.check(r["text"], r.get("context") or []).emergency
    untuned_tri = Triage(spec, str(rules_path), exclude=set(pids))
    untuned = [untuned_tri.check(r["text"], r.get("context") or []).emergency for r in prow]
    if args.coverage:
        cov_path = rules_path.parent.parent / "tables" / "triage_coverage.yaml"
        print(coverage_markdown(yaml.safe_load(cov_path.read_text(encoding="utf-8"))["presentations"], prow, lpo,
                                [x.rule_ids for x in plain_res]))
        return 0
    n_tuned = sum(1 for r in tri.rules if r.tuned_on) + sum(1 for v in (spec.get("tuned") or {}).values() for e in v
                                                            if isinstance(e, dict) and e.get("tuned_on")) \
        + len(spec.get("vetoes") or [])
    print(f"triage on {' + '.join(Path(f).name for f in args.set)} ({len(prow)} items: {sum(r['label'] for r in prow)} emergency over "
          f"{len({r['presentation'] for r in prow if r['label']})} presentations, "
          f"{sum(1 - r['label'] for r in prow)} hard negatives; {n_tuned} rule-file entries tagged tuned_on)")
    presentation_report(prow, {"plain": plain, "leave-presentation-out": lpo,
                               "strict leave-out": strict, "untuned (table only)": untuned,
                               "leave-out, no generic": lpo_nogen}, args.errors)
    if args.model:
        import triage_model

        from ming.safety import model_triage

        prompt = args.prompt or model_triage.DEFAULT_PROMPT
        sc = education_gate(triage_model.score(prow, args.model, prompt, limit=args.model_limit), prow, tri)
        sub, mpreds, notes = triage_model.model_lines(prow, sc, plain, lpo, lpo_nogen)
        print(f"\nmodel judge {args.model}, prompt {prompt} ({model_triage.prompt_hash(prompt)}) on {len(sub)} of "
              f"{len(prow)} messages ({sum(r['label'] for r in sub)} emergency, {sum(1 - r['label'] for r in sub)} "
              f"hard negatives); thresholds for FPR <= 0.05")
        presentation_report(sub, mpreds, args.errors)
        for n in notes:
            print(n)
    if args.ngram:
        import triage_ngram

        print("\nthe n-gram step (bench/triage_ngram.py):")
        triage_ngram.main(["--real", str(args.real)] if args.real else [])
    if args.probe:
        probe_report(tri, rules_path, args.errors)
    pooled: list[tuple[int, bool, bool]] = []  # (label, rules, as shipped) over every held-out set
    for holdout in args.holdout:
        hold = load(Path(holdout)) if Path(holdout).is_file() else []
        if hold and args.model and args.model_holdout:
            hsc = education_gate(triage_model.score(hold, args.model, prompt), hold, tri)
            p_all = [sc[i]["p_yes"] for i in sorted(sc)]
            labels = [prow[i]["label"] for i in sorted(sc)]
            t_model = triage_model.lowest_threshold(labels, p_all, [False] * len(p_all), 0.05)
            t_comb = triage_model.lowest_threshold(labels, p_all, [lpo[i] for i in sorted(sc)], 0.05)
            hrules = [tri.check(r["text"], r.get("context") or []).emergency for r in hold]
            hp = [hsc[i]["p_yes"] for i in range(len(hold))]
            print(f"\nheld-out set {Path(holdout).name} with the judge (thresholds from the labelled set: model "
                  f"{t_model:.3f}, "
                  f"rules OR model {t_comb:.3f})")
            shipped = [a or x >= model_triage.DEFAULT_THRESHOLD for a, x in zip(hrules, hp)]
            presentation_report(hold, {"packaged rules": hrules, "model alone": [x >= t_model for x in hp],
                                       "rules OR model": [a or x >= t_comb for a, x in zip(hrules, hp)],
                                       f"as shipped (OR at {model_triage.DEFAULT_THRESHOLD})": shipped}, args.errors)
            pooled.extend((r["label"], a, b) for r, a, b in zip(hold, hrules, shipped))
        if hold:
            print(f"\nheld-out set {Path(holdout).name} ({len(hold)} items, written after all tuning, never tuned on)")
            no_gen = Triage(spec, str(rules_path), layers_off={"generic"})
            presentation_report(hold, {"packaged rules": [tri.check(r["text"], r.get("context") or []).emergency
                                                          for r in hold],
                                       "without generic layer": [
                                           no_gen.check(r["text"], r.get("context") or []).emergency for r in hold]},
                                args.errors)
    if pooled:
        pos, neg = [p for p in pooled if p[0]], [p for p in pooled if not p[0]]
        for name, k in (("rules", 1), (f"rules OR model at {model_triage.DEFAULT_THRESHOLD} (as shipped)", 2)):
            print(f"held-out sets pooled, {name}: recall {_rate(sum(p[k] for p in pos), len(pos))}, "
                  f"FPR {_rate(sum(p[k] for p in neg), len(neg))}")
    print()

    rows = load(Path(args.data))
    results = [tri.check(r["text"], r.get("context") or []) for r in rows]
    preds = [res.emergency for res in results]

    print(f"older set {args.data} ({len(rows)} items: {sum(r['label'] for r in rows)} emergency, "
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
    unit = "我胸口疼，没有出汗，去年住过院，如果喘怎么办，血压一百五。"
    sweep = []
    for n in (1_000, 16_000, 100_000, 1_000_000):  # one message of n characters: the cost is capped
        msg = (unit * (n // len(unit) + 1))[:n]
        tri._analyse.cache_clear()
        t0 = time.perf_counter()
        tri.check(msg)
        t_tri_n = time.perf_counter() - t0
        tri._analyse.cache_clear()
        t0 = time.perf_counter()
        policy.check([{"role": "user", "content": msg}])
        sweep.append((n, t_tri_n, time.perf_counter() - t0))
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
    print("one message of n characters (a check reads at most the first and last 10,000): "
          + "; ".join(f"{n:,}: triage {a * 1e3:.1f} ms, SafetyPolicy.check {b * 1e3:.1f} ms" for n, a, b in sweep))

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
            if args.probe:  # the probe as chat runs it: where no rule fired and the question is not education
                from triage_model import beyond_rules

                from ming.safety.probe_triage import ProbeTriage

                verdicts, fired = beyond_rules(ProbeTriage(), tri, qs, {q for q, _ in flagged})
                print(f"  + the triage probe (asked about {len(verdicts)} the rules left, the rest education): "
                      f"{len(fired)} more flagged; rules OR probe {len(flagged) + len(fired)}/{len(qs)} "
                      f"({(len(flagged) + len(fired)) / max(1, len(qs)):.1%}); median "
                      f"{statistics.median(v.seconds for _, v in verdicts) if verdicts else 0:.2f} s a question")
                if args.errors:
                    for q, v in fired:
                        print(f"  PROBE p={v.p_yes:.3f}: {q[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
