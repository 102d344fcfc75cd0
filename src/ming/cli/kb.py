"""`ming kb`: build and inspect the medical knowledge base; replay a consultation through the
controller without a model."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text,
        description="The knowledge base behind 智能问诊 (consult mode): diseases with symptoms, checks, departments, "
                    "drugs and complications, from a folder of the medical_kg schema (entities.jsonl + triples.jsonl). "
                    "Default folder: $MING_KB, else medical_kg in the data folder. The index lives in $MING_HOME/kb/.")
    p.add_argument("--kb", default=None, metavar="DIR", help="KB folder (overrides $MING_KB)")
    sub = p.add_subparsers(dest="kb_command", metavar="ACTION")
    sub.add_parser("build", help="(re)build the index now")
    sub.add_parser("info", help="index location, counts, licence, staleness and load time")
    sym = sub.add_parser("symptoms", help="normalised symptoms (with negation) found in a text")
    sym.add_argument("text")
    dis = sub.add_parser("disease", help="what the KB says about one disease")
    dis.add_argument("name")
    con = sub.add_parser("consult", help="replay patient messages through the consultation controller (template "
                                         "questions, no model) and print each action and its reasoning")
    con.add_argument("messages", nargs="+", help="the patient's messages, in order")
    con.add_argument("--json", action="store_true", help="one JSON object per turn (the `ming_consult` field)")
    p.set_defaults(func=run, kb_command=None)
    return p


def run(args) -> int:
    from ming.kb import build_index, index_path, kb_source, load_kb
    from ming.kb.build import read_licence, stale_reason

    src = kb_source(args.kb)
    action = args.kb_command or "info"
    if action == "build":
        print(f"[ming kb] source: {src}")
        print(f"[ming kb] licence (upstream): {read_licence(src)}")
        rep = build_index(src)
        print(f"[ming kb] {rep.counts['diseases']} diseases, {rep.counts['symptom_names']} symptom names → "
              f"{rep.counts['concepts']} canonical symptoms, {rep.counts['triples_used']} relations; "
              f"{rep.seconds:.1f} s → {rep.index}")
        if rep.n_problems:
            print(f"[ming kb] {rep.n_problems} bad source line(s) skipped:", *rep.problems[:10], sep="\n  ")
        return 0
    t0 = time.perf_counter()
    kb = load_kb(args.kb)
    load_s = time.perf_counter() - t0
    if action == "info":
        d = kb.data
        print(f"source:   {kb.source}")
        print(f"index:    {index_path(src)} (built {d['built']}; {stale_reason(d, src) or 'up to date'})")
        print(f"licence:  {kb.licence}")
        print(f"counts:   {json.dumps(d['counts'], ensure_ascii=False)}")
        print(f"problems: {d['n_problems']} bad source line(s)" + "".join(f"\n  {p}" for p in d["problems"][:10]))
        print(f"load:     {load_s * 1000:.0f} ms (this process, including the staleness check)")
        return 0
    if action == "symptoms":
        for m in kb.lexicon.mentions(args.text):
            print(f"{m.surface}\t→ {m.canonical}\t{m.polarity}\tdiseases: {len(kb.diseases_with(m.canonical))}")
        return 0
    if action == "disease":
        d = kb.disease(args.name)
        if d is None:
            from ming.errors import MingError

            near = kb.diseases_in(args.name)
            raise MingError(f"no disease named {args.name!r} in {kb.source}"
                            + (f"; names found in it: {', '.join(near)}" if near else ""))
        print(json.dumps({"name": args.name, **d}, ensure_ascii=False, indent=1))
        print(f"licence: {kb.licence}", file=sys.stderr)
        return 0
    if action == "consult":
        from ming.consult import step

        msgs: list[dict] = []
        for text in args.messages:
            msgs.append({"role": "user", "content": text})
            a = step(msgs, kb)
            if args.json:
                print(json.dumps(a.to_dict(), ensure_ascii=False))
            else:
                print(f"患者：{text}\n[{a.kind}] {a.text or '(the model answers, grounded in the assessment)'}\n")
                print("  " + a.why().replace("\n", "\n  ") + "\n")
            msgs.append({"role": "assistant", "content": a.text})
        print(f"KB licence: {kb.licence}", file=sys.stderr)
        return 0
    return 2
