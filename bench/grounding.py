"""Benchmark grounding: report explanations checked against the findings, medication notes, retrieval.

    .venv/bin/python bench/grounding.py sample --model 0.5b --threads 2   # answers through the turn pipeline (slow)
    .venv/bin/python bench/grounding.py report [--answers A.jsonl ...]   # checker P/R + contradictions before/after
    .venv/bin/python bench/grounding.py medication               # Rx / antibiotic-note precision & recall
    .venv/bin/python bench/grounding.py retrieval                # index build time, ms per question
    .venv/bin/python bench/grounding.py retrieval-eval --model 1.5b --out R.jsonl  # MCQ / open QA with and without passages
    .venv/bin/python bench/grounding.py retrieval-eval --out R.jsonl --report-only  # summarise a run

Reports: the hand-written reports of tests/fixtures/safety/reports plus seeded synthetic reports (panels
of the reference table with random normal / abnormal values, several paste formats). `sample` answers each
report through the real turn pipeline (`ming.respond.Pipeline` with the stages `ming chat` / `ming serve` run
by default: safety, grounding, medication), `--samples` times with different seeds at temperature > 0, and
keeps per answer the model's raw text of each run ("before": what the model wrote before any check) and what
the pipeline showed ("after": the model text that passed + the grounding stage's composed explanation).
Answers go to runs/ (git-ignored) and a stopped run resumes.

Labelled sets (labelled by hand for this project, in tests/fixtures/grounding/): labelled_sentences.jsonl
(written sentences, {report, sentence, contradiction 0/1}; a few items are two lines, a heading and its bullet), model_sentences.jsonl (the embedded model's own
sentences from an earlier run that name a test; phase dev/test) and medication_answers.jsonl.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORTS = ROOT / "tests" / "fixtures" / "safety" / "reports"
LABELLED = ROOT / "tests" / "fixtures" / "grounding"

# panels for synthetic reports: (display name as pasted, test key, unit, normal value, low value, high value)
PANELS = {
    "血常规": [("白细胞", "WBC", "×10^9/L", 6.2, 2.8, 13.5), ("中性粒细胞", "NEUT_PCT", "%", 60, 32, 85),
             ("淋巴细胞", "LYM_PCT", "%", 30, 12, 58), ("红细胞", "RBC", "×10^12/L", 4.6, 3.2, 6.2),
             ("血红蛋白", "HGB", "g/L", 140, 95, 185), ("血小板", "PLT", "×10^9/L", 230, 80, 420)],
    "肝功能": [("谷丙转氨酶", "ALT", "U/L", 25, 3, 120), ("谷草转氨酶", "AST", "U/L", 22, 5, 90),
             ("γ-谷氨酰转移酶", "GGT", "U/L", 30, 3, 110), ("总胆红素", "TBIL", "μmol/L", 12, None, 38),
             ("白蛋白", "ALB", "g/L", 45, 33, 58)],
    "肾功能": [("肌酐", "CREA", "μmol/L", 70, 30, 160), ("尿素", "UREA", "mmol/L", 5.0, 1.8, 11.2),
             ("尿酸", "UA", "μmol/L", 300, 120, 520)],
    "血脂": [("总胆固醇", "TC", "mmol/L", 4.5, None, 6.6), ("甘油三酯", "TG", "mmol/L", 1.2, None, 2.8),
           ("低密度脂蛋白胆固醇", "LDLC", "mmol/L", 2.8, None, 4.4), ("高密度脂蛋白胆固醇", "HDLC", "mmol/L", 1.3, 0.8, None)],
    "甲功": [("TSH", "TSH", "mIU/L", 2.1, 0.05, 9.8), ("FT3", "FT3", "pmol/L", 4.8, 2.2, 9.5), ("FT4", "FT4", "pmol/L", 16, 8, 30)],
    "铁代谢": [("铁蛋白", "FER", "ng/mL", 80, 6, None), ("血清铁", "FE", "μmol/L", 18, 4.5, None),
            ("转铁蛋白饱和度", "TSAT", "%", 30, 9, None)],
    "凝血": [("PT", "PT", "s", 12.0, None, 16.5), ("APTT", "APTT", "s", 30, None, 48), ("D-二聚体", "DDIMER", "mg/L", 0.2, None, 1.8),
           ("纤维蛋白原", "FIB", "g/L", 3.0, 1.4, 5.2)],
    "血糖": [("空腹血糖", "GLU", "mmol/L", 5.2, 3.2, 7.8), ("糖化血红蛋白", "HBA1C", "%", 5.3, None, 7.1)],
    "炎症": [("C反应蛋白", "CRP", "mg/L", 3, None, 45), ("降钙素原", "PROCAL", "ng/mL", 0.03, None, 0.9)],
    "肿瘤标志物": [("CEA", "CEA", "ng/mL", 2.1, None, 9.5), ("AFP", "AFP", "ng/mL", 3.2, None, 35), ("CA125", "CA125", "U/mL", 12, None, 80)],
}
FORMATS = ["{n} {v} {u}", "{n}：{v}{u}", "{n}={v} {u}", "{n} {v}"]
ASKS = ["这是什么情况？", "帮我看看这个报告，严重吗？", "请解读一下。", "需要注意什么？"]


def synthetic_reports(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    names = sorted(PANELS)
    for i in range(n):
        panels = rng.sample(names, k=1 if rng.random() < 0.6 else 2)
        parts = []
        fmt = rng.choice(FORMATS)
        for p in panels:
            items = []
            for disp, _key, unit, normal, lo, hi in PANELS[p]:
                choice = rng.random()
                v = hi if choice < 0.3 and hi is not None else lo if choice < 0.45 and lo is not None else normal
                items.append(fmt.format(n=disp, v=f"{v:g}", u=unit if "{u}" in fmt else ""))
            parts.append(f"{p}：" + "，".join(items))
        sex = rng.choice(["", "女，", "男，"])
        out.append((f"synth_{i:02d}", sex + "；".join(parts) + "。" + rng.choice(ASKS)))
    return out


def bench_reports(n_synth: int = 25, seed: int = 0) -> list[tuple[str, str]]:
    fixed = [(p.name, p.read_text(encoding="utf-8").strip()) for p in sorted(REPORTS.glob("*.txt"))]
    return fixed + synthetic_reports(n_synth, seed)


# ---- sample -----------------------------------------------------------------------------------------
class _Recording:
    """The engine, with each model run's raw text kept: what the model wrote before any check saw it."""

    def __init__(self, engine):
        self.engine, self.runs = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, prompt_ids, gen, cancel=None):
        self.runs.append("")
        for ch in self.engine.stream(prompt_ids, gen, cancel):
            if ch.text and not (cancel is not None and cancel.is_set()):
                self.runs[-1] += ch.text
            yield ch


def pipeline_answer(pipe, text: str, gen) -> dict:
    """One answer to a pasted report through the real turn pipeline (the stages chat and serve run):
    the model's raw text per run, what was shown (model text after the checks + the stages' text) and
    the grounding stage's metadata."""
    rec = pipe.engine
    rec.runs = []
    turn = pipe.prepare([{"role": "user", "content": text}], gen)
    model, added, res = "", {}, None
    for ev in pipe.stream(turn):
        if ev.kind == "text":
            model += ev.text
        elif ev.kind == "added":
            added[ev.stage] = added.get(ev.stage, "") + ev.text
        else:
            res = ev.result
    return {"raw": list(rec.runs), "shown_model": model, "shown_grounding": added.get("grounding", ""),
            "shown": res.text, "canned": turn.canned is not None, "attempts": res.attempts, "finish": res.finish,
            "grounding": res.meta.get("grounding"), "completion_tokens": res.completion_tokens}


def cmd_sample(args) -> int:
    from ming.config import ModelOptions
    from ming.engine import create_engine
    from ming.engine.base import GenerationConfig
    from ming.respond import Pipeline
    from ming.stages import build, stage_options

    reports = bench_reports(args.synthetic, args.seed)[: args.limit or None]
    if args.reverse:  # a second process can work from the other end (report merges and de-duplicates)
        reports = reports[::-1]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["report"], r["seed"]) for r in load_jsonl(out)} if out.exists() else set()
    eng = create_engine(ModelOptions(model_path=args.model, threads=args.threads))
    # the stages `ming chat` / `ming serve` run by default (safety on, qa mode): safety, grounding, medication
    pipe = Pipeline(_Recording(eng), build(stage_options("on", "qa")), mode="qa")
    print(f"engine {eng.backend} {eng.name}; stages {[s.name for s in pipe.stages]}; {len(reports)} reports x "
          f"{args.samples} samples (temperature {args.temperature}, {args.max_tokens} new tokens) -> {out}", flush=True)
    with out.open("a", encoding="utf-8") as fh:
        # report-major (default): a report's samples follow each other, so llama.cpp's prefix cache reuses the
        # prompt (on this CPU the prompt costs more than the answer); sample-major: every report gets its first
        # answer before any gets a second (a stopped run still covers all reports)
        order = ([(s, r) for r in reports for s in range(args.samples)] if args.order == "report"
                 else [(s, r) for s in range(args.samples) for r in reports])
        for s, (name, text) in order:
            seed = args.seed * 1000 + s
            if (name, seed) in done:
                continue
            gen = GenerationConfig(max_new_tokens=args.max_tokens, temperature=args.temperature, top_p=0.9, seed=seed)
            t0 = time.perf_counter()
            row = {"report": name, "seed": seed, "text": text, "model": eng.name, "max_new_tokens": args.max_tokens,
                   **pipeline_answer(pipe, text, gen), "seconds": round(time.perf_counter() - t0, 1)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            g = row["grounding"] or {}
            print(f"{name} seed={seed} attempts={row['attempts']} violations={len(g.get('violations', []))} "
                  f"fallback={g.get('fallback')} {row['seconds']}s", flush=True)
    return 0


# ---- report -----------------------------------------------------------------------------------------
def _pr(labels: list[int], preds: list[bool]) -> dict:
    tp = sum(1 for y, p in zip(labels, preds) if y and p)
    fp = sum(1 for y, p in zip(labels, preds) if not y and p)
    fn = sum(1 for y, p in zip(labels, preds) if y and not p)
    return {"n": len(labels), "pos": tp + fn, "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn)}


def load_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                sys.exit(f"{path}:{n}: not JSON ({exc})")
    return rows


def checker_scores(errors: bool = False, file: str = "labelled_sentences.jsonl", phase: str | None = None) -> dict:
    """The checker on labelled items, each read as the pipeline reads an answer (`check_text`: one sentence, or a
    few lines such as a heading and the bullet under it)."""
    from ming.safety.grounding import check_text
    from ming.safety.report import parse_report

    rows = [r for r in load_jsonl(LABELLED / file) if phase in (None, r.get("phase"))]
    preds, untouched = [], []
    for r in rows:
        fs = parse_report(r["report"])
        p = bool(check_text(r["sentence"], fs))
        preds.append(p)
        untouched.append(passes_untouched(r["sentence"], fs))
        if errors and p != bool(r["contradiction"]):
            print(f"  {'FP' if p else 'FN'}: {r['sentence']}  [{r['report'][:40]}…]")
    out = _pr([r["contradiction"] for r in rows], preds)
    # precision first: an item is shown as written only if no sentence of it is held or dropped
    out["leaked"] = sum(u for u, r in zip(untouched, rows) if r["contradiction"])
    out["kept"] = sum(u for u, r in zip(untouched, rows) if not r["contradiction"])
    return out


def post_check(text: str, findings, strict: bool):
    """(what is shown, the check): the text through the grounding post-check as the pipeline feeds it (sentence by
    sentence), with no regeneration (strict = precision first)."""
    from ming.respond import split_sentences
    from ming.safety.grounding import ReportPostCheck

    pc = ReportPostCheck(findings, retry=False, strict=strict)
    sents, rest = split_sentences(text)
    shown = ""
    for s in sents + [rest]:
        out = pc.sentence(s, shown)
        shown += out if isinstance(out, str) else ""
    return shown, pc


def passes_untouched(text: str, findings) -> bool:
    """The text goes through the grounding post-check (precision first, no regeneration) with nothing held back."""
    shown, _ = post_check(text, findings, strict=True)
    return shown.strip() == text.strip()  # a list number is held until its item, then shown with it


def cmd_report(args) -> int:
    from ming.safety.grounding import check_text
    from ming.safety.report import parse_report

    print("checker on hand-labelled sentences (written: by hand for this project; model: sentences of the embedded "
          "model's sampled answers that name a test, labelled by hand — dev = seen while the checker was developed, "
          "test = labelled after it was frozen)")
    print("| set | sentences | contradictions | precision | recall | tp | fp | fn | precision first: contradictions shown | "
          "non-contradictions shown |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, file, phase in (("written", "labelled_sentences.jsonl", None), ("model dev", "model_sentences.jsonl", "dev"),
                              ("model test", "model_sentences.jsonl", "test")):
        s = checker_scores(args.errors, file, phase)
        if s["n"]:
            print(f"| {name} | {s['n']} | {s['pos']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['tp']} | {s['fp']} | "
                  f"{s['fn']} | {s['leaked']} / {s['pos']} | {s['kept']} / {s['n'] - s['pos']} |")
    files = [Path(a) for a in args.answers if Path(a).is_file()]
    if not files:
        print(f"no sampled answers ({', '.join(args.answers)}); run `bench/grounding.py sample` first")
        return 0
    rows = list({(r["model"], r.get("max_new_tokens", 160), r["report"], r["seed"]): r
                 for f in files for r in load_jsonl(f)}.values())
    for r in rows:
        r["model"] = f"{r['model'].split(':')[-1]}, {r.get('max_new_tokens', 160)} new tokens"
    print("contradictions per answer, through the turn pipeline (safety, grounding, medication stages as in chat / serve); "
          "before = the model's raw first answer, after = what the pipeline showed (model text + the grounding stage's "
          "composed explanation), both judged by the checker")
    print("| model | reports | answers | canned | before: with a contradiction | rate | regenerated, passed | "
          "fell back | after: with a contradiction | rate | median s / answer |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        asked = [r for r in mine if not r["canned"]]
        before = after = regen_ok = fallback = 0
        for r in asked:
            fs = parse_report(r["text"])
            b = check_text(r["raw"][0] if r["raw"] else "", fs)
            a = check_text(r["shown_model"] + r["shown_grounding"], fs)
            before += bool(b)
            after += bool(a)
            g = r["grounding"] or {}
            regen_ok += bool(g.get("regenerated") and not g.get("fallback"))
            fallback += bool(g.get("fallback"))
            if args.errors and (b or a):
                print(f"  {r['report']} seed {r['seed']}: before {[v.describe() for v in b][:2]} after "
                      f"{[v.describe() for v in a][:2]}")
        n = len(asked)
        samples = statistics.median(collections.Counter(r["report"] for r in mine).values())
        print(f"| {model} | {len({r['report'] for r in mine})} (x{samples:g}) | {n} | {len(mine) - n} | "
              f"{before} | {before / max(1, n):.3f} | {regen_ok} | {fallback} | {after} | {after / max(1, n):.3f} | "
              f"{statistics.median(r['seconds'] for r in mine):.0f} |")
    shown_table(rows, args.errors)
    return 0


def replay(raw: str, findings, strict: bool) -> dict:
    """One raw model text through the grounding post-check as the pipeline feeds it (sentence by sentence), with no
    regeneration: what of the model's text would be shown under the policy (strict = precision first)."""
    shown, pc = post_check(raw, findings, strict)
    return {"chars": len(shown.strip()), "any": bool(shown.strip()), "about": pc.explained,
            "composed": bool(pc.finish(shown))}


def shown_about(text: str, findings) -> tuple[bool, list[str]]:
    """Read the shown model text again as a whole: does some sentence say something about the results, and which
    sentences the precision-first check cannot verify (0 when the run was strict, unless the re-reading differs)."""
    from ming.respond import split_sentences
    from ming.safety.grounding import AnswerReader

    reader = AnswerReader(findings)
    sents, rest = split_sentences(text)
    found, unverified = False, []
    for s in sents + [rest]:
        reader.check(s)
        found = found or reader.verified.about
        if not reader.verified.ok:
            unverified.append(s.strip())
    return found, unverified


def shown_table(rows: list[dict], errors: bool = False) -> None:
    """How much of the model's own text is shown: live (as the run showed it) and replayed from each answer's first
    raw text under the round-4 policy (strict off: only contradictions held) and precision first (strict on)."""
    from ming.safety.report import parse_report

    print("model text shown (live: what the run showed; replay: the first raw answer through the post-check, no "
          "regeneration, round-4 policy = only contradictions held, precision first = unverified sentences dropped too)")
    print("| model | answers | policy | some model text shown | some model text about the results shown | "
          "mean shown model chars | composed explanation added | shown with an unverified sentence |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model and not r["canned"]]
        n = max(1, len(mine))
        fss = [parse_report(r["text"]) for r in mine]
        live = [(len(r["shown_model"].strip()), *shown_about(r["shown_model"], fs), bool(r["shown_grounding"]))
                for r, fs in zip(mine, fss)]
        print(f"| {model} | {len(mine)} | live (as run) | {sum(x[0] > 0 for x in live) / n:.0%} | "
              f"{sum(x[1] for x in live) / n:.0%} | {statistics.mean(x[0] for x in live):.0f} | "
              f"{sum(x[3] for x in live) / n:.0%} | {sum(bool(x[2]) for x in live)} |")
        if errors:
            for r, x in zip(mine, live):
                for u in x[2]:
                    print(f"  shown, unverified: {r['report']} {r['seed']}: {u}")
        raw = [len((r["raw"][0] if r["raw"] else "").strip()) for r in mine]
        print(f"| {model} | {len(mine)} | raw first answer (nothing held) | {sum(c > 0 for c in raw) / n:.0%} | | "
              f"{statistics.mean(raw):.0f} | | |")
        for name, strict in (("replay, round-4 policy", False), ("replay, precision first", True)):
            rep = [replay(r["raw"][0] if r["raw"] else "", fs, strict) for r, fs in zip(mine, fss)]
            print(f"| {model} | {len(mine)} | {name} | {sum(x['any'] for x in rep) / n:.0%} | "
                  f"{sum(x['about'] for x in rep) / n:.0%} | {statistics.mean(x['chars'] for x in rep):.0f} | "
                  f"{sum(x['composed'] for x in rep) / n:.0%} | |")


def medication_scores(errors: bool = False, split: str | None = None) -> tuple[dict, dict]:
    from ming.safety.medication import RX_NOTE, VIRAL_NOTE, check_medication

    rows = [r for r in load_jsonl(LABELLED / "medication_answers.jsonl") if split in (None, r["split"])]
    rx, viral = [], []
    for r in rows:
        m = check_medication(r["answer"], [r["user"]])
        rx.append(RX_NOTE in m.suffix)
        viral.append(VIRAL_NOTE in m.suffix)
        if errors and (rx[-1] != bool(r["rx_note"]) or viral[-1] != bool(r["viral_note"])):
            print(f"  #{r['id']} rx {int(rx[-1])}/{r['rx_note']} viral {int(viral[-1])}/{r['viral_note']}: {r['answer']}")
    return _pr([r["rx_note"] for r in rows], rx), _pr([r["viral_note"] for r in rows], viral)


def cmd_medication(args) -> int:
    print("medication notes on hand-labelled answers (dev: rules tuned on it; test: written after the rules were frozen)")
    print("| split | note | items | should be present | precision | recall | tp | fp | fn |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for split in ("dev", "test", None):
        rx, viral = medication_scores(args.errors and split is None, split)
        for name, s in (("需医生面诊后开具 (Rx drug named)", rx), ("antibiotic + viral-sounding symptoms", viral)):
            print(f"| {split or 'all'} | {name} | {s['n']} | {s['pos']} | {s['precision']:.3f} | {s['recall']:.3f} | "
                  f"{s['tp']} | {s['fp']} | {s['fn']} |")
    return 0


def _shared(name: str, split: str) -> Path:
    from ming import envs

    data = envs.data_dir()
    path = data / name / f"{split}.jsonl" if data else None
    if path is None or not path.is_file():
        sys.exit(f"needs the shared data ({name}/{split}.jsonl); set MING_DATA_DIR")
    return path


def cmd_retrieval(args) -> int:
    from ming.retrieve import load_index

    t0 = time.perf_counter()
    idx = load_index(with_qa=args.with_qa)
    print(f"index: {len(idx.passages)} passages, {idx.weights.shape[1]} bigrams, {idx.weights.nnz} weights; "
          f"load/build {time.perf_counter() - t0:.2f} s (a build happens once, then it is read from MING_HOME)")
    rows = load_jsonl(_shared("huatuo26m_qa", "dev"))[: args.questions]
    times, hit = [], 0
    for r in rows:
        t = time.perf_counter()
        h = idx.search(r["question"], k=3)
        times.append((time.perf_counter() - t) * 1000)
        hit += bool(h)
    times.sort()
    print(f"{len(rows)} huatuo26m_qa/dev questions: ms per question median {statistics.median(times):.1f}, "
          f"p95 {times[int(0.95 * (len(times) - 1))]:.1f}, max {times[-1]:.1f}; with >=1 passage: {hit}")
    return 0


def cmd_retrieval_eval(args) -> int:
    """MCQ accuracy (generate, greedy) and open-QA ROUGE-L with and without retrieved passages, same items.
    Each item's pair of results is appended to --out as it is done, so a stopped run still reports."""
    from ming.eval.metrics import mcnemar, paired_bootstrap

    out = Path(args.out)
    done = {(r["kind"], r["id"]) for r in load_jsonl(out)} if out.exists() else set()
    if not args.report_only:
        _retrieval_eval_run(args, out, done)
    rows = load_jsonl(out)
    mcq = [r for r in rows if r["kind"] == "mcq"]
    qa = [r for r in rows if r["kind"] == "qa"]
    on, off = [r["on"] for r in mcq], [r["off"] for r in mcq]
    print(f"| condition | {args.task} MCQ accuracy (n={len(mcq)}) | huatuo26m_qa ROUGE-L F (n={len(qa)}) |")
    print("|---|---:|---:|")
    for cond, vals in (("off", off), ("on", on)):
        q = statistics.mean(r[cond] for r in qa) if qa else float("nan")
        print(f"| retrieval {cond} | {sum(vals) / max(1, len(vals)):.3f} | {q:.4f} |")
    print(f"MCQs with >=1 retrieved passage: {sum(r['hits'] > 0 for r in mcq)}/{len(mcq)}; "
          f"McNemar on vs off: {mcnemar(on, off)}")
    for cond in ("off", "on"):
        letters = [(r[cond + "_text"].split("答案：")[-1].strip()[:1] or "?") for r in mcq]
        print(f"letters answered ({cond}): " + ", ".join(f"{k} {letters.count(k)}" for k in sorted(set(letters))))
    if qa:
        pb = paired_bootstrap([r["off"] for r in qa], [r["on"] for r in qa])
        print(f"open QA ROUGE-L on - off: {pb['delta']:+.4f} (95% CI {pb['ci95'][0]:+.4f} to {pb['ci95'][1]:+.4f}, "
              f"p {pb['p']:.2f}); better with passages {sum(r['on'] > r['off'] for r in qa)}, worse "
              f"{sum(r['on'] < r['off'] for r in qa)}")
        same = sum(r["on_text"] == r["off_text"] for r in qa)
        print(f"open QA: {same}/{len(qa)} answers identical with and without passages; mean passages {statistics.mean(r['hits'] for r in qa):.1f}")
    return 0


def _with_system(messages: list[dict], addendum: str) -> list[dict]:
    """The passages after the system prompt, as the 0.5B's on/off run had them (`context_text`'s header says to use
    them only when relevant; the pipeline's retrieval stage renders the same passages under 【参考资料】)."""
    msgs = [dict(m) for m in messages]
    if addendum:
        msgs[0]["content"] = (msgs[0]["content"] + "\n\n" + addendum).strip()
    return msgs


def _retrieval_eval_run(args, out: Path, done: set) -> None:
    from ming.config import ModelOptions
    from ming.engine import create_engine
    from ming.engine.base import GenerationConfig
    from ming.eval.extract import extract_choice
    from ming.eval.metrics import rouge_l
    from ming.eval.prompts import ANSWER_PREFIX, format_options, mcq_messages
    from ming.prompts import QA
    from ming.retrieve import context_text, load_index

    rng = random.Random(args.seed)
    mcq = [r for r in load_jsonl(_shared(args.task, "dev")) if len(r["answer"]) == 1]
    mcq = rng.sample(mcq, min(args.n, len(mcq)))
    qa = rng.sample(load_jsonl(_shared("huatuo26m_qa", "dev")), args.qa)
    if args.same_as:  # the items another run answered (another model on the same items)
        ids = {(r["kind"], r["id"]) for r in load_jsonl(Path(args.same_as))}
        mcq = [r for r in mcq if ("mcq", r["id"]) in ids]
        qa = [r for r in qa if ("qa", r["id"]) in ids]
    idx = load_index(with_qa=args.with_qa)
    eng = create_engine(ModelOptions(model_path=args.model, threads=args.threads))
    print(f"engine {eng.backend} {eng.name}; MCQ mode {args.mode}; {len(mcq)} {args.task}/dev single-answer MCQs, {len(qa)} huatuo26m_qa/dev "
          f"questions, seed {args.seed}, retrieval k={args.k} {'KB+QA' if args.with_qa else 'KB'} -> {out}", flush=True)
    with out.open("a", encoding="utf-8") as fh:
        for kind, items in (("qa", qa), ("mcq", mcq)):  # open QA first: the 0.5B's MCQ letters barely move
            for item in items:
                if (kind, item["id"]) in done:
                    continue
                query = item["question"] + ("\n" + format_options(item["options"]) if kind == "mcq" else "")
                hits = idx.search(query, k=args.k)
                row = {"kind": kind, "id": item["id"], "hits": len(hits), "sources": [h.passage.source for h in hits]}
                for cond in ("off", "on"):
                    if kind == "mcq":
                        msgs = [{"role": "system", "content": QA}] + mcq_messages(item, [])
                    else:
                        msgs = [{"role": "system", "content": QA}, {"role": "user", "content": item["question"]}]
                    if cond == "on":
                        msgs = _with_system(msgs, context_text(hits))
                    ids = eng.render(msgs).ids
                    if kind == "mcq" and args.mode == "loglik":  # rank the letters after "答案：" (as `ming eval --mode loglik`)
                        ctx = ids + eng.tokenizer.encode(ANSWER_PREFIX["zh"], add_special_tokens=False)
                        ll = {k: eng.loglikelihood(ctx, eng.tokenizer.encode(k, add_special_tokens=False))
                              for k in item["options"]}
                        text = max(ll, key=ll.get)
                        row[cond] = text == item["answer"]
                    elif kind == "mcq":
                        text = eng.generate(ids, GenerationConfig(max_new_tokens=12, temperature=0.0, seed=0)).text
                        row[cond] = extract_choice(text, item["options"]).letters == item["answer"]
                    else:
                        text = eng.generate(ids, GenerationConfig(max_new_tokens=args.qa_tokens, temperature=0.0, seed=0)).text
                        row[cond] = rouge_l(text, item["answer"])["f"]
                    row[cond + "_text"] = text
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                print(f"{kind} {item['id']} off={row['off']} on={row['on']} hits={len(hits)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("sample", help="sample answers with a model (default: the embedded one)")
    sp.add_argument("--out", default=str(ROOT / "runs" / "grounding_answers.jsonl"),
                    help="JSONL to append to (resumes: done report/seed pairs are skipped; runs/ is git-ignored)")
    sp.add_argument("--model", "--model-path", dest="model", default=None,
                    help="model path or embedded key (0.5b, 1.5b; default: the default model)")
    sp.add_argument("--threads", type=int, default=None, help="CPU threads for llama.cpp")
    sp.add_argument("--samples", type=int, default=3, help="answers per report, seeds seed*1000+i")
    sp.add_argument("--synthetic", type=int, default=9, help="synthetic reports on top of the fixtures")
    sp.add_argument("--limit", type=int, default=0, help="first N reports only (0 = all)")
    sp.add_argument("--max-tokens", type=int, default=160, help="new tokens per answer")
    sp.add_argument("--temperature", type=float, default=0.7)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--order", choices=("report", "sample"), default="report",
                    help="report: a report's samples one after another (prompt reused); sample: one pass per seed")
    sp.add_argument("--reverse", action="store_true", help="answer the reports in reverse order")
    rp = sub.add_parser("report", help="checker precision/recall; contradiction rates from sampled answers")
    rp.add_argument("--answers", nargs="*", default=sorted(str(p) for p in (ROOT / "runs").glob("grounding_answers*.jsonl")),
                    help="JSONL file(s) written by `sample` (default: runs/grounding_answers*.jsonl)")
    rp.add_argument("--errors", action="store_true", help="print misses / false alarms")
    mp = sub.add_parser("medication", help="medication-note precision / recall on the labelled answers")
    mp.add_argument("--errors", action="store_true")
    tp = sub.add_parser("retrieval", help="retrieval index build time and latency")
    tp.add_argument("--questions", type=int, default=200)
    tp.add_argument("--with-qa", action="store_true", help="also index the huatuo26m_qa / toyhom_qa train splits")
    ep = sub.add_parser("retrieval-eval", help="MCQ accuracy with / without retrieved passages")
    ep.add_argument("--n", type=int, default=100)
    ep.add_argument("--task", default="cmexam")
    ep.add_argument("--seed", type=int, default=0)
    ep.add_argument("--model", "--model-path", dest="model", default=None,
                    help="model path or embedded key (0.5b, 1.5b; default: the default model)")
    ep.add_argument("--threads", type=int, default=None, help="CPU threads for llama.cpp")
    ep.add_argument("--same-as", default=None, help="only the items of this earlier --out (another model's run)")
    ep.add_argument("--k", type=int, default=2, help="passages per question")
    ep.add_argument("--qa", type=int, default=20, help="open questions from huatuo26m_qa/dev")
    ep.add_argument("--qa-tokens", type=int, default=96)
    ep.add_argument("--with-qa", action="store_true", help="index the QA train splits too")
    ep.add_argument("--mode", choices=("loglik", "generate"), default="generate",
                    help="MCQ scoring: generate and extract the letter, or rank the letters by log-likelihood "
                         "(the llama.cpp loglik engine keeps every position's logits: ~20x slower here)")
    ep.add_argument("--out", default=str(HERE.parent / "runs" / "grounding_retrieval_eval.jsonl"),
                    help="JSONL of per-item results (appended; resumes; runs/ is git-ignored: model outputs on dev items)")
    ep.add_argument("--report-only", action="store_true", help="summarise --out without running the model")
    args = ap.parse_args(argv)
    return {"sample": cmd_sample, "report": cmd_report, "medication": cmd_medication,
            "retrieval": cmd_retrieval, "retrieval-eval": cmd_retrieval_eval}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
