"""Triage on English messages (bench/data/triage_english): recall and false alarms per part, for the rules alone,
the rules with the n-gram step (the default of `ming triage`), and, with --model, the rules with the embedded
model's constrained 是/否 on what they miss (what `ming chat` and `ming serve` do for English with the 1.5B).

    .venv/bin/python bench/triage_english.py                 # rules; rules + n-gram
    .venv/bin/python bench/triage_english.py --model 1.5b    # + the 1.5B's yes/no (~1 s a message on CPU)

Session 15's figures are in docs/triage.md; `s15c` is the part written after the rules' English table.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from ming.safety.ngram_triage import NgramTriage, Unreadable
from ming.safety.policy import SafetyPolicy

SET = Path(__file__).resolve().parent / "data" / "triage_english" / "english_set.jsonl"


def score(rows: list[dict], judge) -> dict:
    policy = SafetyPolicy().load()
    out: dict = defaultdict(lambda: {"tp": 0, "pos": 0, "fp": 0, "neg": 0, "missed": [], "false": []})
    for r in rows:
        d = policy.check([{"role": "user", "content": r["text"]}], judge=judge)
        e = d.action == "escalate"
        s = out[r["part"]]
        if r["label"]:
            s["pos"] += 1
            s["tp"] += e
            if not e:
                s["missed"].append(r["id"])
        else:
            s["neg"] += 1
            s["fp"] += e
            if e:
                s["false"].append(r["id"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="also the rules + this embedded model's yes/no (e.g. 1.5b)")
    ap.add_argument("--set", default=str(SET))
    args = ap.parse_args()
    rows = [json.loads(x) for x in Path(args.set).read_text(encoding="utf-8").splitlines() if x.strip()]
    arms = [("rules", None), ("rules + n-gram", NgramTriage())]
    if args.model:
        from ming.config import ModelOptions
        from ming.engine import create_engine
        from ming.safety.model_triage import ModelTriage

        engine = create_engine(ModelOptions(model_path=args.model), scoring_sequence=True)
        from ming.safety.probe_triage import FirstOf

        # as chat and serve ask it: the n-gram step (which passes English over), then the yes/no on English
        arms.append((f"rules + n-gram + {args.model} yes/no", FirstOf([NgramTriage(), Unreadable(ModelTriage(engine))])))
    print(f"{'arm':36s} " + " ".join(f"{p:>22s}" for p in sorted({r['part'] for r in rows})))
    for name, judge in arms:
        res = score(rows, judge)
        cells = [f"{s['tp']}/{s['pos']} · FA {s['fp']}/{s['neg']}" for _, s in sorted(res.items())]
        print(f"{name:36s} " + " ".join(f"{c:>22s}" for c in cells))
        for part, s in sorted(res.items()):
            if s["missed"] or s["false"]:
                print(f"    {part}: missed {' '.join(s['missed']) or '-'}; false alarms {' '.join(s['false']) or '-'}")


if __name__ == "__main__":
    main()
