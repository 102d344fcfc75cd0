"""Triage on English messages (bench/data/triage_english): recall and false alarms per part, for the rules alone,
the rules with the n-gram step (the default of `ming triage`), and, with --model, the rules with the embedded
model's constrained 是/否 on what they miss (what `ming chat` and `ming serve` do for English with the 1.5B).

    .venv/bin/python bench/triage_english.py                 # rules; rules + n-gram
    .venv/bin/python bench/triage_english.py --model 1.5b    # + the 1.5B's yes/no (~1 s a message on CPU)

Session 15's figures are in docs/triage.md; `s15c` is the part written after the rules' English table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from safety import load, score  # bench/safety.py, next to this script

from ming.safety.ngram_triage import NgramTriage
from ming.safety.policy import SafetyPolicy

SET = Path(__file__).resolve().parent / "data" / "triage_english" / "english_set.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="also the rules + this embedded model's yes/no (e.g. 1.5b)")
    ap.add_argument("--set", default=str(SET))
    args = ap.parse_args()
    rows = load(Path(args.set))
    policy = SafetyPolicy().load()
    arms = [("rules", None), ("rules + n-gram", NgramTriage())]
    if args.model:
        from ming.config import ModelOptions
        from ming.engine import create_engine
        from ming.safety.stage import SafetyStage

        # the safety stage as chat and serve bind it: the n-gram step, then the yes/no on what it passes over
        stage = SafetyStage(policy, english_model=True)
        stage.bind(create_engine(ModelOptions(model_path=args.model), scoring_sequence=True))
        if not stage.reads_english:
            raise SystemExit(f"{args.model} is not a model chat and serve ask about English (the embedded 1.5B)")
        arms.append((f"rules + n-gram + {args.model} yes/no", stage.judge))
    parts = sorted({r["part"] for r in rows})
    print(f"{'arm':36s} " + " ".join(f"{p:>22s}" for p in parts))
    for name, judge in arms:
        pred = [policy.check([{"role": "user", "content": r["text"]}], judge=judge).action == "escalate" for r in rows]
        cells, notes = [], []
        for part in parts:
            sub = [(r, p) for r, p in zip(rows, pred) if r["part"] == part]
            s = score([r for r, _ in sub], [p for _, p in sub])
            cells.append(f"{s['tp']}/{s['pos']} · FA {s['fp']}/{s['neg']}")
            missed = [r["id"] for r, p in sub if r["label"] and not p]
            false = [r["id"] for r, p in sub if not r["label"] and p]
            if missed or false:
                notes.append(f"    {part}: missed {' '.join(missed) or '-'}; false alarms {' '.join(false) or '-'}")
        print(f"{name:36s} " + " ".join(f"{c:>22s}" for c in cells))
        for line in notes:
            print(line)


if __name__ == "__main__":
    main()
