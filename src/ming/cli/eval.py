"""`ming eval`: medical benchmarks and simulated-patient consultations.

    ming eval cmexam,cmb --output runs/e1                    # the embedded model, generate mode
    ming eval mcq_dev --mode loglik --backend hf --output runs/e2
    ming eval cmexam --base-url http://127.0.0.1:8000/v1 --api-model ming --output runs/e3
    ming eval mcq --data my_exam.jsonl --output runs/e4
    ming eval meddialog_cn_100 --limit 20 --max-turns 4 --output runs/e5
    ming eval compare runs/e1 runs/e3
    ming eval report runs/e1                                 # tables of a run in progress or stopped
    ming eval list
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ming import DISCLAIMER, envs
from ming.cli.common import MODEL_GROUP, model_options
from ming.config import ModelOptions, add_settings, load
from ming.config import save as save_config
from ming.engine import create_engine
from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.eval import compare as compare_runs
from ming.eval.clients import LocalClient, OpenAIClient
from ming.eval.judge import Judge
from ming.eval.report import to_markdown
from ming.eval.runner import EvalOptions, Runner, report_only
from ming.eval.tasks import REGISTRY, SUITES, expand, get
from ming.stages import build, stage_options


def add_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter, description=(
        "Evaluate a model on medical benchmarks: exam MCQs (generate or loglik scoring, accuracy with 95% CI), "
        "open QA (ROUGE-L / BLEU on characters, optional LLM judge), safety prompts, and simulated-patient "
        "consultations. TASK is a comma-separated list of tasks or suites (`ming eval list`), or `list`, or "
        "`compare A B`. Results are appended per item to OUTPUT/results.jsonl: rerun the same command to "
        "continue a killed run."), epilog=__doc__.split("\n", 2)[2])
    p.add_argument("task", nargs="?", help="TASK[,TASK…] | suite | list | compare A B | report DIR")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    add_settings(p, EvalOptions, ModelOptions, groups=("evaluation", MODEL_GROUP),
                 config_help="YAML of eval settings (configs/eval/*.yaml; `tasks:` may replace TASK); flags override it")
    c = p.add_argument_group("simulated-patient consultation")
    c.add_argument("--patient-base-url", default=None, help="OpenAI-compatible URL of the patient model")
    c.add_argument("--patient-api-model", default=None)
    c.add_argument("--patient-api-key", default=None)
    h = p.add_argument_group("OpenAI-compatible endpoint (instead of a local model)")
    h.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1 (`ming serve`, vLLM, a vendor)")
    h.add_argument("--api-model", default=None, help="model name to send (default: the first of GET /v1/models)")
    h.add_argument("--api-key", default=None, help="bearer token, if the server wants one")
    h.add_argument("--retries", type=int, default=3, help="retries per request on connection errors, 429 and 5xx")
    h.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    j = p.add_argument_group("LLM judge (open QA / safety tasks; optional)")
    j.add_argument("--judge-base-url", default=None, help="OpenAI-compatible URL of the judge model")
    j.add_argument("--judge-model", default=None)
    j.add_argument("--judge-api-key", default=None)
    p.add_argument("--json", action="store_true", help="compare/list: print JSON instead of a table")
    p.set_defaults(func=run)
    return p


def _list(as_json: bool) -> int:
    import json

    d = envs.data_dir()
    rows = []
    for name in REGISTRY:
        t = get(name)
        path = (d / t.dataset / t.file) if (d and t.dataset) else None
        rows.append({"task": name, "kind": t.kind, "version": t.version, "language": t.language,
                     "data": str(path) if path else "--data FILE", "available": bool(path and path.is_file()) or
                     t.dataset is None, "description": t.description})
    if as_json:
        print(json.dumps({"tasks": rows, "suites": SUITES}, ensure_ascii=False, indent=2))
        return 0
    print(f"data folder: {d or 'not found (set MING_DATA_DIR)'}\n")
    print(f"{'task':<20} {'kind':<8} {'ver':<4} {'data':<44} description")
    for r in rows:
        data = r["data"].replace(str(d) + "/", "") if d else r["data"]
        mark = "" if r["available"] else " (missing)"
        print(f"{r['task']:<20} {r['kind']:<8} {r['version']:<4} {data + mark:<44} {r['description']}")
    print("\nsuites: " + "; ".join(f"{k} = {','.join(v)}" for k, v in SUITES.items()))
    return 0


def _compare(args) -> int:
    import json

    if len(args.extra) != 2:
        raise MingError("usage: ming eval compare RUN_A RUN_B (two --output folders of `ming eval`; a side may be "
                        "several folders joined by commas: runs/base-gen,runs/base-ll)")
    rows = compare_runs.compare(*args.extra)
    print(json.dumps(rows, ensure_ascii=False, indent=2) if args.json
          else compare_runs.to_markdown(rows, *args.extra), end="")
    return 0


def _client(args, need_loglik: bool, opts: EvalOptions):
    off = [s.strip() for s in (opts.stages_off or "").split(",") if s.strip()]
    if args.base_url:
        if off:
            raise MingError(f"--stages-off {','.join(off)} applies to a local model; a --base-url server runs its own "
                            "stages (start `ming serve --mode consult` for the controller, --mode qa without it)")
        if opts.retrieval:
            raise MingError("--retrieval applies to a local model; a --base-url server runs its own stages (start it "
                            "with `ming serve --retrieval`)")
        if args.model_path:
            raise MingError("give either --model-path (a local model) or --base-url (a server), not both")
        return OpenAIClient(args.base_url, args.api_model, args.api_key, timeout=args.timeout, retries=args.retries)

    # ranking options by likelihood generates no text: nothing for a safety layer to act on
    stages = [] if need_loglik else build(stage_options(opts.safety, retrieval=opts.retrieval,
                                                        stages_off=off))  # fails before the model loads
    engine = create_engine(model_options(args), max_batch=1 if need_loglik else max(1, opts.batch_size))
    return LocalClient(engine, safety="off" if need_loglik else opts.safety, off=off, stages=stages)


def run(args: argparse.Namespace) -> int:
    if args.task == "list":
        return _list(args.json)
    if args.task == "compare":
        return _compare(args)
    if args.task == "report":
        if len(args.extra) != 1:
            raise MingError("usage: ming eval report RUN_DIR (rebuilds the report of a run, running nothing)")
        print(to_markdown(report_only(args.extra[0], limit=args.limit)), end="")
        return 0
    if args.extra:
        raise MingError(f"unexpected arguments {args.extra}; give tasks as one comma-separated list, e.g. cmexam,cmb")
    opts = load(EvalOptions, args)
    if args.task:
        opts.tasks = args.task
    if not opts.tasks:
        raise MingError("give the tasks to run (e.g. `ming eval cmexam --output runs/x`) or a --config with "
                        "`tasks:`; `ming eval list` shows them")
    if isinstance(opts.tasks, str):
        opts.tasks = expand(opts.tasks)
    else:
        opts.tasks = expand(",".join(opts.tasks))
    if not opts.output:
        raise MingError("--output DIR is required: the folder where results.jsonl and the report go")

    print(f"[ming eval] {DISCLAIMER}", file=sys.stderr)
    save_config(Path(opts.output) / "eval_config.yaml", opts, *([] if args.base_url else [model_options(args)]))
    client = _client(args, need_loglik=opts.mode == "loglik", opts=opts)
    patient_client = judge = None
    if opts.patient == "llm" and args.patient_base_url:
        patient_client = OpenAIClient(args.patient_base_url, args.patient_api_model, args.patient_api_key,
                                      timeout=args.timeout, retries=args.retries)
    elif opts.patient == "llm" and client.kind == "local":

        patient_client = LocalClient(client.engine, safety="off")  # the same model plays the patient, unfiltered
    elif opts.patient == "llm":
        patient_client = client  # the same server plays the patient
    if args.judge_base_url:
        jc = OpenAIClient(args.judge_base_url, args.judge_model, args.judge_api_key, timeout=args.timeout,
                          retries=args.retries)
        judge = Judge(jc, GenerationConfig(max_new_tokens=128, temperature=0.0, top_p=1.0, seed=opts.seed))
    report = Runner(client, opts, patient_client=patient_client, judge=judge).run()

    print(to_markdown(report), end="")
    print(f"[ming eval] report: {opts.output}/report.md and report.json; per-item results: "
          f"{opts.output}/results.jsonl", file=sys.stderr)
    return 0
