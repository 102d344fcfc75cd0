"""Run tasks against a client and write DIR/results.jsonl (per item, resumable), DIR/run.json
(settings) and DIR/report.json + DIR/report.md (tables with 95% confidence intervals).

Items run sequentially on a local engine (one generation at a time per engine) and
`batch_size` at a time against an HTTP endpoint. Each item gets its own seed derived from the run
seed and the item id, so a resumed run gives the same answers as an uninterrupted one."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ming import __version__, envs
from ming.config import RETRIEVAL_HELP, SAFETY, option
from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.eval import metrics, prompts
from ming.eval.extract import answer_line_complete, extract_choice
from ming.eval.prompts import ANSWER_PREFIX, LETTER_SEP, PROMPT_VERSION, mcq_messages
from ming.eval.dxkb import kb_hits
from ming.eval.report import summarize, to_markdown
from ming.eval.results import ResultsLog, check_fingerprints
from ming.eval.simpatient import (
    DOCTOR_PROMPT_VERSION,
    FINAL_QUESTION,
    PATIENT_PROMPT,
    PATIENT_PROMPT_VERSION,
    RULE_PATIENT_VERSION,
    LLMPatient,
    RulePatient,
    consult,
)
from ming.eval.tasks import get
from ming.eval.tasks.base import read_rows
from ming.kb import load_kb
from ming.prompts import system_prompt

MODES = ("generate", "loglik")
PATIENTS = ("rule", "llm")
DEFAULT_MAX_NEW = {"mcq": 24, "qa": 256, "safety": 256, "consult": 160}


@dataclass
class EvalOptions:
    tasks: list[str] = option(help="tasks or suites to run (the TASK argument; `ming eval list`)", cli=False,
                              default_factory=list)
    output: str = option("", "run folder (results.jsonl, run.json, eval_config.yaml, report.json, report.md)",
                         flags=("--output", "-o"))
    mode: str = option("generate", "MCQ scoring: generate (the model answers, letters extracted) or loglik (options "
                                   "ranked by the log-likelihood of the letter; local models only)", choices=MODES)
    shots: int = option(0, "few-shot examples for MCQ tasks, drawn (seeded) from the task's dev split and never scored")
    limit: int | None = option(None, "first N items of each task (default: all)")
    seed: int = option(1234, "run seed; each item's seed derives from it")
    max_new_tokens: int | None = option(None, "tokens per answer (default: 24 for MCQ, 256 for QA/safety, 160 per "
                                              "consultation turn)")
    temperature: float = option(0.0, "0 = greedy")
    top_p: float = option(1.0, "nucleus mass when sampling")
    batch_size: int = option(1, "items answered at once: concurrent requests to --base-url, or sequences batched in a "
                                "local llama.cpp engine (continuous batching; transformers answers one at a time)")
    safety: str = option("on", "local models: answer through the runtime safety layer as `ming chat` does; a "
                               "--base-url server applies its own", choices=SAFETY)
    retrieval: bool = option(False, "local models: " + RETRIEVAL_HELP)
    max_turns: int = option(4, "doctor turns per consultation")
    patient: str = option("rule", "rule: keyword/bigram simulator, no second model; llm: a model plays the patient",
                          choices=PATIENTS)
    stop_at_answer: bool = option(True, "MCQ generate on a local model: stop once a complete \"答案：X\" line is "
                                        "written (the reason after it is never scored); --no-stop-at-answer keeps "
                                        "generating")
    stages_off: str = option("", "local models: turn these turn-pipeline stages off (comma-separated; e.g. `consult`: "
                                 "the plain model, to measure the consultation controller against it)")
    data: str | None = option(None, "JSONL file for the `mcq` task (shared MCQ schema), or a replacement data file "
                                    "when one task is given")
    overwrite: bool = option(False, "discard earlier results of these tasks in OUTPUT")
    progress: bool = option(True, "progress bars (--no-progress: none)")


def item_seed(seed: int, item_id: str) -> int:
    return int(hashlib.md5(f"{seed}:{item_id}".encode()).hexdigest()[:8], 16)


@dataclass
class Prepared:
    task: object
    path: Path
    items: list[dict]
    shots: list[dict] = field(default_factory=list)
    problems: list = field(default_factory=list)
    filtered: int = 0
    cases: dict = field(default_factory=dict)  # consult: id -> Case
    unusable: int = 0


class Runner:
    def __init__(self, client, opts: EvalOptions, patient_client=None, judge=None, log=None):
        self.client = client
        self.opts = opts
        self.patient_client = patient_client
        self.judge = judge
        self.log = log or (lambda msg: print(f"[ming eval] {msg}", file=sys.stderr, flush=True))
        self._kb = None  # consult tasks: the KB for the synonym-aware diagnosis match (loaded on first use)
        if opts.mode not in ("generate", "loglik"):
            raise MingError(f"--mode must be generate or loglik, got {opts.mode!r}")
        if opts.patient not in ("rule", "llm"):
            raise MingError(f"--patient must be rule or llm, got {opts.patient!r}")
        if opts.patient == "llm" and patient_client is None:
            raise MingError("--patient llm needs a patient model: --patient-base-url URL (any OpenAI-compatible "
                            "server, e.g. a second `ming serve`); --patient rule needs none")

    # -- preparation ----------------------------------------------------------------------------
    def prepare(self, name: str) -> Prepared:
        task = get(name)
        data = self.opts.data if (name == "mcq" or len(self.opts.tasks) == 1) else None
        path = task.data_path(envs.data_dir(), data)
        rows, problems = read_rows(path, task.kind)
        for p in problems:
            self.log(f"{name}: skipped bad row {p}")
        n0 = len(rows)
        if task.keep:
            rows = [r for r in rows if task.keep(r)]
        prep = Prepared(task, path, [], problems=problems, filtered=n0 - len(rows))
        if self.opts.shots and task.kind == "mcq":
            pool_path = task.shots_path(envs.data_dir(), path)
            rng = random.Random(self.opts.seed)
            if pool_path == path:
                prep.shots = rng.sample(rows, min(self.opts.shots, max(0, len(rows) - 1)))
                shot_ids = {s["id"] for s in prep.shots}
                rows = [r for r in rows if r["id"] not in shot_ids]  # never score a shot
            else:
                pool, _ = read_rows(pool_path, "mcq")
                scored = {r["id"] for r in rows}
                pool = [r for r in pool if r["id"] not in scored]
                prep.shots = rng.sample(pool, min(self.opts.shots, len(pool)))
        elif self.opts.shots and task.kind != "mcq":
            self.log(f"{name}: --shots applies to multiple-choice tasks only; ignored")
        # Items run in a seeded shuffled order, and --limit N takes the first N of it: some data files
        # are sorted (e.g. every medqa_mcmle dev item whose answer is B comes first), so a file prefix
        # or a stopped run would be a biased sample. A larger limit extends a smaller one.
        rows.sort(key=lambda r: item_seed(self.opts.seed, r["id"]))
        if self.opts.limit is not None:
            rows = rows[: self.opts.limit]
        if task.kind == "consult":
            kept = []
            for r in rows:
                case = task.to_case(r)
                if case is None:
                    prep.unusable += 1
                    continue
                prep.cases[r["id"]] = case
                kept.append(r)
            rows = kept
        prep.items = rows
        return prep

    def gen_for(self, kind: str, item_id: str):
        return GenerationConfig(max_new_tokens=self.opts.max_new_tokens or DEFAULT_MAX_NEW[kind],
                                temperature=self.opts.temperature, top_p=self.opts.top_p,
                                seed=item_seed(self.opts.seed, item_id)).validate()

    def fingerprint(self, prep: Prepared) -> dict:
        t = prep.task
        fp = {"task_version": t.version, "data": str(prep.path), "model": self.client.describe().get("name"),
              "backend": self.client.describe().get("backend"), "seed": self.opts.seed,
              "max_new_tokens": self.opts.max_new_tokens or DEFAULT_MAX_NEW[t.kind],
              "temperature": self.opts.temperature, "top_p": self.opts.top_p, "safety": self.client.safety}
        if t.kind == "mcq":
            fp.update(mode=self.opts.mode, shots=[s["id"] for s in prep.shots], prompt_version=PROMPT_VERSION)
        if t.kind == "consult":
            fp.update(max_turns=self.opts.max_turns, patient=self.opts.patient, doctor_prompt=DOCTOR_PROMPT_VERSION,
                      patient_prompt=PATIENT_PROMPT_VERSION, rule_patient=RULE_PATIENT_VERSION,
                      stages_off=self.client.describe().get("stages_off"))
        if t.kind in ("qa", "safety"):
            fp.update(judge=self.judge.describe()["rubric_version"] if self.judge else None)
        return fp

    # -- items --------------------------------------------------------------------------------------
    def _mcq(self, prep: Prepared, item: dict) -> dict:
        lang = prep.task.language
        msgs = mcq_messages(item, prep.shots, lang)
        row = {"gold": item["answer"], "n_options": len(item["options"]), "multi": len(item["answer"]) > 1}
        for k in prep.task.group_keys:
            if item.get(k):
                row[k] = item[k]
        if self.opts.mode == "loglik":
            c = self.client
            prefix = ANSWER_PREFIX[lang]
            ctx = list(c.engine.render(msgs).ids) + c.encode(prefix)
            conts = {L: c.continuation_ids(prefix, LETTER_SEP[lang] + L) for L in item["options"]}
            lp = c.option_logprobs(ctx, conts)
            pred = max(lp, key=lambda k: lp[k])  # ties go to the earlier letter; counted in the report
            top = sorted(lp.values(), reverse=True)
            row.update(pred=pred, status="ok", rule="loglik", correct=pred == item["answer"],
                       tie=len(top) > 1 and top[0] == top[1],
                       logprobs={k: round(v, 4) for k, v in lp.items()}, prompt_tokens=len(ctx))
            return row
        kw = {}
        if self.opts.stop_at_answer and getattr(self.client, "stops_early", False):
            kw["until"] = functools.partial(answer_line_complete, options=item["options"])
        r = self.client.chat(msgs, self.gen_for("mcq", item["id"]), **kw)
        scored_text = r.model_text or r.text
        ex = extract_choice(scored_text, item["options"])
        row.update(pred=ex.letters, status="ok" if ex.parsed else "unparsed", rule=ex.rule,
                   correct=bool(ex.parsed and ex.letters == item["answer"]), output=r.text,
                   finish_reason=r.finish_reason, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens)
        if r.safety:
            row["safety"] = r.safety
        return row

    def _qa(self, prep: Prepared, item: dict) -> dict:
        safety_task = prep.task.kind == "safety"
        question = item["prompt"] if safety_task else item["question"]
        reference = item.get("reference_response" if safety_task else "answer") or ""
        msgs = [{"role": "system", "content": system_prompt("qa")}, {"role": "user", "content": question}]
        r = self.client.chat(msgs, self.gen_for(prep.task.kind, item["id"]))
        row = {"output": r.text, "finish_reason": r.finish_reason, "prompt_tokens": r.prompt_tokens,
               "completion_tokens": r.completion_tokens}
        for k in prep.task.group_keys:
            if item.get(k):
                row[k] = item[k]
        if reference:
            rl = metrics.rouge_l(r.text, reference)
            row.update(rouge_l=rl["f"], bleu=metrics.bleu(r.text, reference))
        if safety_task:
            row["safety_action"] = (r.safety or {}).get("action", "answer" if r.safety is None else "?")
            row["safety_layer"] = r.safety
        if self.judge is not None:
            v = self.judge.score(question, r.text, reference, safety=safety_task)
            row.update(judge_score=v.score, judge_attempts=v.attempts, judge_raw=v.raw[:500])
        return row

    def _consult(self, prep: Prepared, item: dict) -> dict:
        case = prep.cases[item["id"]]
        gen = self.gen_for("consult", item["id"])
        if self.opts.patient == "llm":
            patient = LLMPatient(case, self.patient_client, gen.replace(max_new_tokens=160))
        else:
            patient = RulePatient(case)
        system = system_prompt("consult")
        res = consult(self.client, patient, case, gen, max_turns=self.opts.max_turns, system=system, mode="consult")
        row = asdict(res)
        kb = self.kb()
        if kb is not None:
            row["dx_top1"], row["dx_top3"] = kb_hits(res.final_text, case.diagnosis, kb)
        row.update(gold_diagnosis=case.diagnosis, n_findings=len(case.findings),
                   findings=[asdict(f) for f in case.findings], chief_complaint=case.chief_complaint)
        if case.department:
            row["department"] = case.department
        return row

    def kb(self):
        """The KB for the diagnosis match through it (None, said once, when there is no KB)."""
        if self._kb is None:
            try:
                self._kb = load_kb()
            except MingError as exc:
                self.log(f"no KB, so no synonym-aware diagnosis top-1/top-3 ({exc})")
                self._kb = False
        return self._kb or None

    def run_item(self, prep: Prepared, item: dict) -> dict:
        t0 = time.time()
        kind = prep.task.kind
        fn = {"mcq": self._mcq, "qa": self._qa, "safety": self._qa, "consult": self._consult}[kind]
        row = {"task": prep.task.name, "id": item["id"], "kind": kind}
        row.update(fn(prep, item))
        row["seconds"] = round(time.time() - t0, 3)
        return row

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> dict:
        out = Path(self.opts.output)
        if self.opts.mode == "loglik" and not getattr(self.client, "can_loglik", False):
            raise MingError("--mode loglik ranks options by log-likelihood and needs a local model (llama.cpp or "
                            "transformers backend); an HTTP endpoint can only be evaluated with --mode generate")
        preps = [self.prepare(n) for n in self.opts.tasks]
        fps = {p.task.name: self.fingerprint(p) for p in preps}
        log = ResultsLog(out)
        stored = check_fingerprints(out / "run.json", fps, overwrite=self.opts.overwrite)
        if log.repaired:
            self.log(f"cut a torn last line ({log.repaired} bytes) from {log.path}: that item runs again")
        if self.opts.overwrite:
            for name in fps:
                n = log.drop_task(name)
                if n:
                    self.log(f"--overwrite: discarded {n} earlier {name} results")
        settings = {k: v for k, v in asdict(self.opts).items() if k not in ("progress",)}
        run_info = {"model": self.client.describe(), "settings": settings,
                    "judge": self.judge.describe() if self.judge else None,
                    "patient_model": self.patient_client.describe() if self.patient_client else None,
                    "tasks": {**stored.get("tasks", {}), **fps}}
        (out / "run.json").write_text(json.dumps(run_info, ensure_ascii=False, indent=2), encoding="utf-8")
        self.log("settings: " + json.dumps({"model": run_info["model"], **settings}, ensure_ascii=False))
        try:
            for prep in preps:
                self._run_task(prep, log)
        finally:
            log.close()
        report = self.report(preps, log, run_info)
        return report

    def _run_task(self, prep: Prepared, log: ResultsLog) -> None:
        name = prep.task.name
        todo = [it for it in prep.items if not log.done(name, it["id"])]
        done = len(prep.items) - len(todo)
        self.log(f"{name}: {len(prep.items)} items ({done} already done, {len(todo)} to run) from {prep.path}")
        if not todo:
            return
        from tqdm import tqdm

        bar = tqdm(total=len(prep.items), initial=done, desc=name, unit="item", file=sys.stderr,
                   disable=not self.opts.progress, mininterval=2, dynamic_ncols=True)
        try:
            if self.opts.batch_size > 1 and (self.client.kind == "http" or getattr(self.client, "batching", False)):
                with ThreadPoolExecutor(self.opts.batch_size) as pool:
                    for row in pool.map(lambda it: self.run_item(prep, it), todo):
                        log.append(row)
                        bar.update(1)
            else:
                for it in todo:
                    log.append(self.run_item(prep, it))
                    bar.update(1)
        finally:
            bar.close()

    # -- reports ------------------------------------------------------------------------------------
    def report(self, preps: list[Prepared], log: ResultsLog, run_info: dict) -> dict:
        tasks = {}
        for p in preps:
            rows = log.task_rows(p.task.name, [it["id"] for it in p.items])
            s = summarize(p.task, rows, n_items=len(p.items))
            s.update(version=p.task.version, data=str(p.path), bad_rows=[str(x) for x in p.problems],
                     filtered_out=p.filtered, unusable_cases=p.unusable, shots=[x["id"] for x in p.shots],
                     description=p.task.description, prompt=prompt_record(p, self.opts))
            tasks[p.task.name] = s
        report = {"ming_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "model": run_info["model"], "settings": run_info["settings"], "judge": run_info["judge"],
                  "patient_model": run_info["patient_model"], "tasks": tasks}
        out = Path(self.opts.output)
        old = {}
        if (out / "report.json").exists():
            try:
                old = json.loads((out / "report.json").read_text(encoding="utf-8")).get("tasks", {})
            except json.JSONDecodeError:
                old = {}
        report["tasks"] = {**{k: v for k, v in old.items() if k not in tasks}, **tasks}
        (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        (out / "report.md").write_text(to_markdown(report), encoding="utf-8")
        return report


class _Recorded:
    """Stands in for the model of a finished (or killed) run when only its report is rebuilt."""

    can_loglik = True

    def __init__(self, model: dict):
        self.model = model
        self.kind = model.get("kind", "local")
        self.safety = model.get("safety")

    def describe(self) -> dict:
        return self.model


def report_only(out_dir: str | Path, limit: int | None = None) -> dict:
    """Rebuild DIR/report.json and report.md from DIR/results.jsonl and DIR/run.json, running
    nothing (for a run still in progress or one that was stopped). Progress is shown against the
    whole task ("150 of 685") unless `limit` narrows it."""
    out = Path(out_dir)
    if not (out / "run.json").is_file():
        raise MingError(f"{out} has no run.json: not a `ming eval` output folder")
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    st = {k: v for k, v in info["settings"].items() if k in EvalOptions.__dataclass_fields__}
    tasks = list(info.get("tasks") or st.get("tasks") or [])  # every task the folder has run, not just the last call's
    opts = EvalOptions(**{**st, "tasks": tasks, "output": str(out), "progress": False, "limit": limit})
    runner = Runner(_Recorded(info["model"]), opts, patient_client=_Recorded(info["patient_model"])
                    if info.get("patient_model") else None, log=lambda m: None)
    preps = [runner.prepare(n) for n in opts.tasks]
    log = ResultsLog(out)
    try:
        return runner.report(preps, log, info)
    finally:
        log.close()


def prompt_record(prep: Prepared, opts: EvalOptions) -> dict:
    kind = prep.task.kind
    if kind == "mcq":
        tpl = prompts.MCQ_EN if prep.task.language == "en" else prompts.MCQ_ZH
        rec = {"version": prompts.PROMPT_VERSION, "user": tpl, "shots": len(prep.shots)}
        if opts.mode == "loglik":
            rec["loglik"] = (f"chat-rendered prompt + '{prompts.ANSWER_PREFIX[prep.task.language]}', "
                             "options ranked by log P(letter)")
        return rec
    if kind in ("qa", "safety"):
        return {"system": system_prompt("qa"), "user": "the question / prompt as is"}
    rec = {"version": DOCTOR_PROMPT_VERSION, "system": system_prompt("consult"),
           "final_question": FINAL_QUESTION, "patient": opts.patient}
    if opts.patient == "llm":
        rec.update(patient_version=PATIENT_PROMPT_VERSION, patient_prompt=PATIENT_PROMPT)
    return rec
