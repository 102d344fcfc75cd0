"""智能问诊 measured with the evaluator's simulated patient: the consultation controller against the
plain model, paired on the same cases, plus the controller's cost per turn.

    # the plain model, through the evaluator's own local path (safety layer on, consult system prompt)
    nice -n 10 .venv/bin/python bench/consult.py run --arm plain --model-path base --out runs/consult_bench
    # the controller (template questions and assessment; the safety check runs first, as in the pipeline)
    .venv/bin/python bench/consult.py run --arm controller --out runs/consult_bench
    # … or the controller with the model phrasing its questions (template when the phrasing fails)
    nice -n 10 .venv/bin/python bench/consult.py run --arm phrased --model-path base --out runs/consult_bench
    .venv/bin/python bench/consult.py table runs/consult_bench/plain.jsonl runs/consult_bench/controller.jsonl
    .venv/bin/python bench/consult.py overhead
    # written outpatient cases instead of the dialogue datasets (any arm)
    .venv/bin/python bench/consult.py run --arm controller --cases tests/fixtures/consult_cases.jsonl --out runs/cw
    .venv/bin/python bench/consult.py table runs/cw/controller.jsonl

Cases: per task, the first --limit cases of the evaluator's seeded order (`Runner.prepare`, so
`ming eval TASK --limit N --seed S` scores the same ones) plus every case of the task whose whole
hidden story trips `ming.safety.triage` (the red-flag cases, scored for escalation). The patient is
the rule-based simulator; each consultation runs `ming.eval.simpatient.consult` unchanged.

Metrics per arm (table): share of non-final doctor turns that ask a question (the simulator's own
test, `questions_in`), coverage of hidden findings, diagnosis by the evaluator's lexical match and by
the KB (top-1 / top-3: the first KB diseases named in the final answer's diagnosis sentence, matched
synonym-aware through the KB), doctor turns, escalation on red-flag cases. Wilson 95% CIs for rates, bootstrap for means.

A case file (`--cases FILE`, JSONL rows `{id, chief_complaint, findings: [{id, category, text}], diagnosis,
differential: [...], department, red_flag, sex, age}`) replaces the dataset sampling: every row is one
consultation, its `red_flag` label says which cases should be escalated. The rule-based patient answers age and sex
only from a finding of category "profile", so the row's sex and age become one more hidden finding ("女，22岁")
that does not count towards coverage (coverage is over the row's own findings). For case files `table` adds: the
diagnosis or one of its listed differentials among the KB top-3, department match (a department the row lists, by
name, in the final answer's 就诊科室 line or, without one, anywhere in it), and false escalation on the cases not
labelled red-flag."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

from ming.consult import phrase, rank, step
from ming.eval.clients import Reply
from ming.eval.dxkb import kb_hits
from ming.eval.metrics import bootstrap_ci, mcnemar, paired_bootstrap, wilson_ci
from ming.eval.runner import EvalOptions, Runner
from ming.eval.simpatient import Case, Finding, RulePatient, consult, diagnosis_hit, questions_in
from ming.kb import load_kb
from ming.prompts import system_prompt
from ming.safety.triage import default_triage
from ming.stages import load_safety

TASKS = "meddialog_cn_100,covid_dialogue_zh,cmtmedqa_dialogue"


class ControllerDoctor:
    """The consult-mode turn as the pipeline will run it: safety check, then the controller; the
    controller's template text is the reply unless `engine` is given to phrase its questions."""

    kind = "controller"

    def __init__(self, kb, policy, engine=None, phrase_tokens: int = phrase.QUESTION_TOKENS, judge=None):
        self.kb, self.policy, self.engine, self.phrase_tokens = rank.warm(kb), policy, engine, phrase_tokens
        self.judge = judge  # the safety stage's model step (the n-gram step by default, as in the pipeline)
        self.step_ms: list[float] = []
        self.phrased = self.fallbacks = 0

    def describe(self) -> dict:
        return {"kind": "controller", "kb": self.kb.source, "phrased_by": getattr(self.engine, "name", None)}

    def _phrase(self, msgs, action, gen) -> str:
        from ming.engine.base import GenerationConfig

        conv = [m for m in msgs if m["role"] != "system"]
        ids = self.engine.render(phrase.model_messages(conv, action)).ids
        g = GenerationConfig(max_new_tokens=self.phrase_tokens, temperature=0, seed=gen.seed).validate()
        with self.engine.lock:
            said = "".join(ch.text for ch in self.engine.stream(ids, g) if ch.text).strip()
        text = phrase.final_text(action, said, self.kb.lexicon)
        if text == action.text:
            self.fallbacks += 1
        else:
            self.phrased += 1
        return text

    def chat(self, messages, gen, until=None, mode=None) -> Reply:
        msgs = list(messages)
        decision = self.policy.check(msgs, judge=self.judge) if self.policy is not None else None
        t0 = time.perf_counter()
        action = step(msgs, self.kb)
        self.step_ms.append((time.perf_counter() - t0) * 1000)
        text = action.text
        if self.engine is not None and action.kind == "ask":
            text = self._phrase(msgs, action, gen)
        prefix = decision.prefix if decision is not None and decision.prefix else ""
        escalated = action.kind == "escalate" or (decision is not None and decision.action == "escalate")
        return Reply(text=(prefix + "\n\n" + text) if prefix else text, model_text=text,
                     safety={"action": "escalate"} if escalated else None, info={"kind": action.kind})


def red_flag_case(case) -> bool:
    return default_triage().check("。".join([case.chief_complaint] + [f.text for f in case.findings])).emergency


def cases_for(runner: Runner, name: str, limit: int):
    prep = runner.prepare(name)
    chosen = [(it, False) for it in prep.items[:limit]]
    seen = {it["id"] for it, _ in chosen}
    for it in prep.items:
        if red_flag_case(prep.cases[it["id"]]):
            if it["id"] in seen:
                chosen = [(x, x["id"] == it["id"] or flag) for x, flag in chosen]
            else:
                chosen.append((it, True))
    return prep, chosen


CASE_TASK = "cases"  # the task name of a case-file row in the results


def profile_text(sex: str | None, age) -> str:
    """How the patient tells sex and age (a profile finding the rule-based patient can give)."""
    parts = [p for p in (sex, f"{age:g}岁" if isinstance(age, (int, float)) else None) if p]
    return "，".join(parts)


def load_case_file(path: str | Path) -> list[tuple[Case, dict]]:
    """(simpatient Case, the row) per line of a written case file; a malformed row is an error naming its line."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            findings = [Finding(int(f["id"]), f["category"], f["text"]) for f in row["findings"]]
            chief = row["chief_complaint"]
            cid = str(row["id"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SystemExit(f"{path}: line {n} is not a case row (id, chief_complaint, findings[id, category, text]): {e}")
        prof = profile_text(row.get("sex"), row.get("age"))
        if prof:
            findings.append(Finding(max((f.id for f in findings), default=0) + 1, "profile", prof))
        out.append((Case(id=cid, chief_complaint=chief, findings=findings, diagnosis=row.get("diagnosis"),
                         department=row.get("department"), source=str(path)), row))
    return out


def case_coverage(res, row: dict) -> float | None:
    """Coverage over the row's own findings (the added profile finding does not count)."""
    own = {int(f["id"]) for f in row["findings"]}
    return len(own & set(res.revealed)) / len(own) if own else None


def _jobs(args, runner):
    """(task, item id, Case, red-flag, row or None) per consultation to run."""
    if args.cases:
        for case, row in load_case_file(args.cases):
            yield CASE_TASK, case.id, case, bool(row.get("red_flag")), row
        return
    for name in args.tasks.split(","):
        prep, chosen = cases_for(runner, name, args.limit)
        n_flag = sum(1 for _, f in chosen if f)
        print(f"[bench] {name}: {len(chosen)} cases ({n_flag} red-flag)", file=sys.stderr)
        for item, flagged in chosen:
            yield name, item["id"], prep.cases[item["id"]], flagged, None


def cmd_run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.arm}.jsonl"
    done = set()
    if path.is_file():
        done = {(r["task"], r["id"]) for r in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if r}
    opts = EvalOptions(tasks=args.tasks.split(","), output=str(out), seed=args.seed, max_turns=args.max_turns,
                       max_new_tokens=args.max_new_tokens, temperature=0.0, progress=False)
    kb = load_kb()
    engine = None
    if args.arm in ("plain", "phrased"):
        from ming.config import ModelOptions
        from ming.engine import create_engine

        engine = create_engine(ModelOptions(model_path=args.model_path, threads=args.threads))
    if args.arm == "plain":
        from ming.eval.clients import LocalClient

        client, system = LocalClient(engine, safety="on"), system_prompt("consult")
    else:
        from ming.safety.ngram_triage import NgramTriage

        client = ControllerDoctor(kb, load_safety("on"), engine if args.arm == "phrased" else None,
                                  judge=NgramTriage() if args.triage_ngram else None)
        system = None
    runner = Runner(client, opts)
    print(f"[bench] arm={args.arm} model={getattr(engine, 'name', None)} kb={kb.source} → {path}", file=sys.stderr)
    with path.open("a", encoding="utf-8") as fh:
        for name, cid, case, flagged, crow in _jobs(args, runner):
            if (name, cid) in done:
                continue
            gen = runner.gen_for("consult", cid)
            t0 = time.time()
            n_steps = len(getattr(client, "step_ms", []))
            res = consult(client, RulePatient(case), case, gen, max_turns=args.max_turns, system=system)
            row = {"task": name, "id": cid, "arm": args.arm, "red_flag_case": flagged,
                   "transcript": res.transcript, "turns": res.turns, "revealed": res.revealed,
                   "n_findings": len(case.findings), "coverage": res.coverage, "final_text": res.final_text,
                   "gold": case.diagnosis, "lexical_hit": res.diagnosis_hit,
                   "escalated": bool(res.safety_events), "concluded_early": res.concluded_early,
                   "seconds": round(time.time() - t0, 2),
                   "step_ms": getattr(client, "step_ms", [])[n_steps:]}
            if crow is not None:
                row.update(n_findings=len(crow["findings"]), coverage=case_coverage(res, crow),
                           differential=list(crow.get("differential") or []), department=crow.get("department"))
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            print(f"[bench] {name} {cid}: {row['seconds']} s, coverage {row['coverage']}, "
                  f"dx {res.diagnosis_hit}", file=sys.stderr)
    if isinstance(client, ControllerDoctor) and engine is not None:
        print(f"[bench] phrased {client.phrased} questions, template fallback {client.fallbacks}", file=sys.stderr)
    return 0


def score(rows: list[dict], kb) -> dict:
    non_final = [t for r in rows for t in [x for x in r["transcript"] if x["role"] == "doctor"][:-1]]
    asked = [bool(questions_in(t["text"])) for t in non_final]
    cov = [r["coverage"] for r in rows if r["coverage"] is not None]
    dx_rows = [r for r in rows if r["gold"]]
    top1 = [x for x in per_case(dx_rows, kb, "top1")]
    top3 = [x for x in per_case(dx_rows, kb, "top3")]
    lex = [bool(diagnosis_hit(r["final_text"], r["gold"])[0]) for r in dx_rows]
    flagged = [r for r in rows if r["red_flag_case"]]
    calm = [r for r in rows if not r["red_flag_case"]]
    ddx = [x for x in per_case(dx_rows, kb, "top3_ddx") if x is not None]
    dept = [x for x in per_case(rows, kb, "department") if x is not None]
    return {"cases": len(rows), "asked": (sum(asked), len(asked)), "coverage": cov,
            "lexical": (sum(lex), len(lex)), "top1": (sum(top1), len(top1)), "top3": (sum(top3), len(top3)),
            "top3_ddx": (sum(ddx), len(ddx)), "department": (sum(dept), len(dept)),
            "turns": [r["turns"] for r in rows], "escalated": (sum(r["escalated"] for r in flagged), len(flagged)),
            "false_escalation": (sum(r["escalated"] for r in calm), len(calm))}


def _rate(kn) -> str:
    k, n = kn
    if not n:
        return "-"
    lo, hi = wilson_ci(k, n)
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({k}/{n})"


def _mean(xs, pct=False) -> str:
    if not xs:
        return "-"
    lo, hi = bootstrap_ci(xs)
    f = 100 if pct else 1
    return f"{f * statistics.mean(xs):.1f} [{f * lo:.1f}, {f * hi:.1f}]" if pct else f"{statistics.mean(xs):.2f}"


def cmd_table(args) -> int:
    kb = load_kb()
    arms = []
    for p in args.files:
        rows = [json.loads(x) for x in Path(p).read_text(encoding="utf-8").splitlines() if x.strip()]
        arms.append((Path(p).stem, {(r["task"], r["id"]): r for r in rows}))
    common = set.intersection(*(set(r) for _, r in arms))
    tasks = sorted({t for t, _ in common}, key=lambda t: TASKS.split(",").index(t) if t in TASKS else 99)
    if tasks == [CASE_TASK]:
        return _case_table(arms, common, kb, args)
    print("| task | arm | cases | asks a question (non-final turns) % | coverage % | diagnosis (lexical) % "
          "| KB top-1 % | KB top-3 % | doctor turns | escalated on red-flag cases |")
    print("|---|---|---:|---|---|---|---|---|---:|---|")
    for task in tasks + ["all"]:
        keys = sorted(k for k in common if task in ("all", k[0]))
        for arm, rows in arms:
            s = score([rows[k] for k in keys], kb)
            print(f"| {task} | {arm} | {s['cases']} | {_rate(s['asked'])} | {_mean(s['coverage'], pct=True)} | "
                  f"{_rate(s['lexical'])} | {_rate(s['top1'])} | {_rate(s['top3'])} | {_mean(s['turns'])} | "
                  f"{_rate(s['escalated'])} |")
    _paired(arms, common, kb)
    return 0


def _case_table(arms, common, kb, args) -> int:
    """The table for a case file: diagnosis (top-1, top-3, or a listed differential in the top 3), coverage,
    asking, department, escalation recall on red-flag rows and false escalation on the others; --detail
    adds one line per case (the KB diseases named, the gold, what was revealed)."""
    print("| arm | cases | KB top-1 % | KB top-3 % | dx or differential in top-3 % | coverage % | asks (non-final turns) % "
          "| department % | escalated (red-flag cases) % | false escalation (others) % |")
    print("|---|---:|---|---|---|---|---|---|---|---|")
    keys = sorted(common)
    for arm, rows in arms:
        s = score([rows[k] for k in keys], kb)
        print(f"| {arm} | {s['cases']} | {_rate(s['top1'])} | {_rate(s['top3'])} | {_rate(s['top3_ddx'])} | "
              f"{_mean(s['coverage'], pct=True)} | {_rate(s['asked'])} | {_rate(s['department'])} | "
              f"{_rate(s['escalated'])} | {_rate(s['false_escalation'])} |")
    _paired(arms, common, kb)
    if getattr(args, "detail", False):
        from ming.eval.dxkb import diagnosis_span

        for arm, rows in arms:
            print(f"\n## {arm}")
            for k in keys:
                r = rows[k]
                named = kb.diseases_in(diagnosis_span(r["final_text"]))[:3]
                t1, t3 = kb_hits(r["final_text"], r["gold"], kb)
                print(f"{r['id']} {'OK ' if t1 else 'ok3' if t3 else '-- '} gold={r['gold']} named={named} "
                      f"cov={r['coverage']:.2f} esc={int(r['escalated'])}/{int(r['red_flag_case'])}")
    return 0


def _paired(arms, common, kb):
    if len(arms) == 2:  # paired tests, second arm against the first, over all common cases
        (na, a), (nb, b) = arms
        keys = sorted(k for k in common if a[k]["coverage"] is not None and b[k]["coverage"] is not None)
        pb = paired_bootstrap([a[k]["coverage"] for k in keys], [b[k]["coverage"] for k in keys])
        print(f"\ncoverage {nb} − {na}: {100 * pb['delta']:+.1f} points [{100 * pb['ci95'][0]:.1f}, "
              f"{100 * pb['ci95'][1]:.1f}], paired bootstrap p = {pb['p']:.3g} ({len(keys)} cases)")
        for metric in ("asked", "top1", "top3") + (("top3_ddx",) if {t for t, _ in common} == {CASE_TASK} else ()):
            pa, pbv = per_case(list(a[k] for k in sorted(common)), kb, metric), per_case(list(b[k] for k in sorted(common)), kb, metric)
            pairs = [(x, y) for x, y in zip(pa, pbv) if x is not None and y is not None]
            m = mcnemar([x for x, _ in pairs], [y for _, y in pairs])
            print(f"{metric} {nb} vs {na}: only {na} {m['only_a']}, only {nb} {m['only_b']}, exact McNemar p = {m['p']:.3g}")


def per_case(rows: list[dict], kb, metric: str) -> list[bool | None]:
    """One right/wrong outcome per case: asked = every non-final doctor turn asks; top1/top3 = diagnosis."""
    out: list[bool | None] = []
    for r in rows:
        if metric == "asked":
            turns = [x for x in r["transcript"] if x["role"] == "doctor"][:-1]
            out.append(all(questions_in(t["text"]) for t in turns) if turns else None)
            continue
        if metric == "department":
            out.append(department_hit(r["final_text"], r.get("department")))
            continue
        if metric == "top3_ddx":
            out.append(ddx_top3(r["final_text"], r["gold"], r.get("differential") or [], kb))
            continue
        top1, top3 = kb_hits(r["final_text"], r["gold"], kb)
        out.append(top1 if metric == "top1" else top3)
    return out


def ddx_top3(text: str, gold: str | None, differential: list[str], kb) -> bool | None:
    """The diagnosis or one of the listed differentials among the first three KB diseases named."""
    if not gold:
        return None
    return any(kb_hits(text, g, kb)[1] for g in [gold] + list(differential))


# the writer's department names against the KB's (寻医问药网: 心内科, 消化内科 …)
_DEPT_SYNONYMS = {"心血管内科": "心内科", "神经内科": "神经内科", "精神心理科": "精神科", "耳鼻喉科": "耳鼻喉科",
                  "风湿免疫科": "风湿免疫科", "急诊科": "急诊科", "妇产科": "妇科", "肝胆外科": "肝胆外科"}


def department_hit(text: str, gold: str | None) -> bool | None:
    """A department the row lists ("呼吸内科/结核病门诊") in the final answer's 就诊科室 line (anywhere in the
    answer when it has no such line); 心血管内科 = 心内科, 精神心理科 = 精神科 / 心理科, 妇产科 = 妇科 / 产科."""
    if not gold:
        return None
    text = text or ""
    m = re.search(r"就诊科室[:：]([^\n]*)", text)
    where = m.group(1) if m else text
    for d in re.split(r"[/、,，]", gold):
        d = d.strip()
        if not d:
            continue
        forms = {d, _DEPT_SYNONYMS.get(d, d), d.replace("科", "")}
        if d == "精神心理科":
            forms |= {"心理科", "精神科"}
        if d == "妇产科":
            forms |= {"产科"}
        if any(f and f in where for f in forms):
            return True
    return False


def cmd_overhead(args) -> int:
    from ming.kb.store import KB, read_index

    t0 = time.perf_counter()
    kb = load_kb()
    first = time.perf_counter() - t0
    loads = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        KB(read_index(kb.path))
        loads.append((time.perf_counter() - t0) * 1000)
    opts = EvalOptions(tasks=args.tasks.split(","), output="/tmp", seed=args.seed, max_turns=args.max_turns,
                       temperature=0.0, progress=False)
    doctor = ControllerDoctor(kb, None)
    runner = Runner(doctor, opts)
    by_len: dict[int, list[float]] = {}
    for name in opts.tasks:
        prep, chosen = cases_for(runner, name, args.limit)
        for item, _ in chosen:
            case = prep.cases[item["id"]]
            n0 = len(doctor.step_ms)
            consult(doctor, RulePatient(case), case, runner.gen_for("consult", item["id"]), max_turns=args.max_turns)
            for i, ms in enumerate(doctor.step_ms[n0:], 1):
                by_len.setdefault(i, []).append(ms)
    ms = sorted(doctor.step_ms)
    q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))]  # noqa: E731
    print(f"KB index: {kb.path} ({kb.path.stat().st_size / 1e6:.1f} MB)")
    print(f"KB load in this process (first call, staleness check included): {first * 1000:.0f} ms")
    print(f"KB load from the index, {args.rounds} rounds: min {min(loads):.0f} ms, median {statistics.median(loads):.0f} ms")
    print(f"controller step over {len(ms)} turns ({args.limit} cases per task + red-flag cases): "
          f"mean {statistics.mean(ms):.1f} ms, p50 {q(0.5):.1f}, p95 {q(0.95):.1f}, max {ms[-1]:.1f} ms "
          f"(target < 50 ms: p95 is {q(0.95) / 50:.2f}× the target)")
    for i, xs in sorted(by_len.items()):
        print(f"  doctor turn {i}: median {statistics.median(xs):.1f} ms over {len(xs)} turns")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one arm over the sampled cases (appends; rerun to continue)")
    r.add_argument("--arm", choices=["plain", "controller", "phrased"], required=True)
    r.add_argument("--model-path", default="0.5b", help="plain/phrased arms: the model (default: the embedded 0.5B)")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--max-new-tokens", type=int, default=128, help="plain arm: tokens per doctor turn")
    r.add_argument("--out", default="runs/consult_bench")
    r.add_argument("--cases", default=None, help="a written case file (JSONL, see the module doc) instead of --tasks")
    r.add_argument("--triage-ngram", action=argparse.BooleanOptionalAction, default=True,
                   help="controller arms: the safety check asks the n-gram step where no rule fires, as the pipeline "
                        "does by default (the plain arm runs the pipeline's own stages)")
    for sp in (r, sub.add_parser("overhead", help="KB load time and controller time per turn")):
        sp.add_argument("--tasks", default=TASKS)
        sp.add_argument("--limit", type=int, default=20, help="cases per task from the seeded order (plus red-flag cases)")
        sp.add_argument("--seed", type=int, default=1234)
        sp.add_argument("--max-turns", type=int, default=4)
        if sp is not r:
            sp.add_argument("--rounds", type=int, default=5)
            sp.set_defaults(func=cmd_overhead)
    r.set_defaults(func=cmd_run)
    t = sub.add_parser("table", help="paired table of two or more arms' results")
    t.add_argument("files", nargs="+")
    t.add_argument("--detail", action="store_true", help="case files: one line per case (KB diseases named, gold)")
    t.set_defaults(func=cmd_table)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
