"""The batching engine without the server: what one decode step costs with 1 and with 8 sequences.

    .venv/bin/python bench/batch_step.py 1.5b /path/to/q8_0.gguf --kernels repacked,invariant

For each model (a name or a .gguf) and kernel choice, in its own process (clean peak RSS):
  * raw steps: a llama.cpp context of max(--batches) sequences (8 as `ming serve --max-batch 8` builds it),
    each holding a --prompt token prompt; the median time of one `llama_decode` in which B sequences each add
    one token (B in --batches, default 1 and 8), --steps steps per round, --rounds rounds;
  * with --runner also the batch runner (ming.engine.batch, sampling and detokenizing included, no HTTP), in a
    process of its own: 1 stream, then 8 concurrent streams of 64 tokens at temperature 0.7, prompts cached
    from the warm-up; with --threads unset the engine follows the free cores as `ming serve` does.
Prints one JSON line per model and kernel choice. The models run one after another in the order given, so
pass them as A B A B (or use --passes 2) to see how much the machine moved between runs."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

from serve import QUESTIONS  # bench/serve.py: the same eight questions as the server benchmark

PROMPT = "请详细介绍高血压的病因、常见症状、诊断标准、治疗方法和日常生活中的预防措施，分点说明。"


def raw_steps(model: str, kernels: str, args) -> dict:
    from ming import models
    from ming.engine import llamacpp
    from ming.engine import threads as thread_policy
    from ming.templates import Template

    ref = models.resolve(model)
    tok = models.load_tokenizer(ref)
    batches = [int(b) for b in args.batches.split(",")]
    n_seq = max(8, *batches)  # at least the 8 of `ming serve --max-batch 8`
    eng = llamacpp.LlamaCppEngine(str(ref.path), tok, Template("qwen", tok),
                                  threads=thread_policy.resolve(args.threads),
                                  context_length=1024, max_batch=n_seq, batch_invariant=kernels == "invariant")
    prompt = tok.encode(PROMPT * 10)[:args.prompt]
    for s in range(1, n_seq + 1):  # sequences 1..n (0 is the one-sequence path), prompts read 64 tokens a step
        for st in range(0, len(prompt), 64):
            part = prompt[st:st + 64]
            eng.decode([(t, st + i, s, i == len(part) - 1) for i, t in enumerate(part)])
    res = {"model": ref.display, "kernels": kernels, "repacked_weights": eng.use_extra_bufts,
           "amx": llamacpp.build_has_amx()}
    for r in range(args.rounds):
        for b in batches:
            pos, ts = len(prompt), []
            for _ in range(args.steps):
                t = time.perf_counter()
                eng.decode([(prompt[pos % len(prompt)], pos, s, True) for s in range(1, b + 1)])
                ts.append(time.perf_counter() - t)
                pos += 1
            ms = statistics.median(ts) * 1000
            res.setdefault(f"step_ms_b{b}", []).append(round(ms, 1))
            res.setdefault(f"tok_s_b{b}", []).append(round(b * 1000 / ms, 1))
            for s in range(1, n_seq + 1):
                eng.seq_rm(s, len(prompt))
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    eng.close()
    return res


def runner_streams(model: str, kernels: str, args) -> dict:
    from ming.config import ModelOptions
    from ming.engine import GenerationConfig, create_engine

    eng = create_engine(ModelOptions(model_path=model, threads=args.threads), max_batch=8,
                        batching={"kv_cells": None, "kv_unified": False, "prefill_chunk": 128,
                                  "batch_invariant": kernels == "invariant"})
    prompts = [eng.render([{"role": "user", "content": q}]).ids for q in QUESTIONS]

    def level(n: int) -> dict:
        done = [0] * n

        def go(i):
            for ch in eng.stream(prompts[i], GenerationConfig(max_new_tokens=64, temperature=0.7, seed=i)):
                done[i] = ch.completion_tokens

        t0, s0 = time.perf_counter(), eng._runner.steps
        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        steps = eng._runner.steps - s0
        return {"tok_s": round(sum(done) / wall, 1), "step_ms": round(wall / max(steps, 1) * 1000, 1)}

    level(8)  # warm-up: the prompts are cached from here on
    res = {"model": eng.name, "kernels": kernels}
    for _ in range(args.rounds):
        for n in (1, 8):
            r = level(n)
            res.setdefault(f"runner_tok_s_{n}", []).append(r["tok_s"])
            res.setdefault(f"runner_step_ms_{n}", []).append(r["step_ms"])
    eng.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model names or .gguf files, measured in this order")
    ap.add_argument("--kernels", default="repacked", help="repacked and/or invariant, comma-separated")
    ap.add_argument("--passes", type=int, default=1, help="run the whole list this many times (A B A B)")
    ap.add_argument("--steps", type=int, default=16, help="decode steps per round (median)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=100, help="prompt tokens per sequence before the steps")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batches", default="1,8", help="raw steps: sequences per step, comma-separated (e.g. 1,2,4,8,16)")
    ap.add_argument("--runner", action="store_true", help="also time the batch runner's streams (no HTTP)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child process: one model, one kernel choice
        model, kernels, part = json.loads(args.one)
        res = raw_steps(model, kernels, args) if part == "raw" else runner_streams(model, kernels, args)
        print(json.dumps(res, ensure_ascii=False), flush=True)
        return 0
    child = ["--steps", str(args.steps), "--rounds", str(args.rounds), "--prompt", str(args.prompt),
             "--batches", args.batches]
    child += ["--threads", str(args.threads)] if args.threads else []
    for p in range(args.passes):
        for kernels in filter(None, args.kernels.split(",")):
            for model in args.models:
                res = {}
                for part in ("raw", "runner") if args.runner else ("raw",):  # each in a fresh process
                    out = subprocess.run([sys.executable, __file__, model, *child, "--one",
                                          json.dumps([model, kernels, part])], capture_output=True, text=True)
                    if not out.stdout.strip():
                        res[f"{part} failed"] = out.stderr[-400:]
                        continue
                    res.update(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"pass {p + 1}: {json.dumps(res, ensure_ascii=False)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
