"""The model triage step's latency in `ming serve --triage-model`: the same routine questions (no red-flag rule
fires, so the model is asked every time) sent one after another to a server without the step and to one with
it, side by side.

    nice -n 19 .venv/bin/python bench/triage_serve.py                          # embedded default model (1.5B)
    nice -n 19 .venv/bin/python bench/triage_serve.py --model-path 0.5b -n 3

Per request: the time to the first character of the answer (TTFT: the step runs before the answer starts), the
whole request, and the step's own seconds and prompt tokens as the response's `ming_safety.triage_model` reports
them. The first request of each server is a warm-up (not counted): it loads the prompt caches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from serve import QUESTIONS, start_server  # bench/serve.py


def ask(url: str, question: str, args) -> dict:
    body = {"messages": [{"role": "user", "content": question}], "stream": True, "max_tokens": args.max_tokens,
            "temperature": 0}
    t0 = time.perf_counter()
    ttft, safety = None, None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        if r.status_code != 200:
            raise SystemExit(f"HTTP {r.status_code}: {r.read().decode()[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            ev = json.loads(line[6:])
            safety = ev.get("ming_safety") or safety
            for ch in ev.get("choices") or []:
                if ttft is None and (ch.get("delta") or {}).get("content"):
                    ttft = time.perf_counter() - t0
    return {"ttft": ttft, "seconds": time.perf_counter() - t0, "safety": safety}


def run(args, triage: bool) -> list[dict]:
    proc, url = start_server(args, args.max_batch, extra=("--triage-model", "--triage-threshold", str(args.threshold))
                             if triage else ())
    try:
        ask(url, "你好", args)  # warm-up
        return [ask(url, QUESTIONS[i % len(QUESTIONS)], args) for i in range(args.n)]
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", default=None, help="default: the embedded default model")
    ap.add_argument("-n", type=int, default=5, help="questions per server (after one warm-up)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch (8 = serve's default)")
    ap.add_argument("--context-length", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--server-log", default="/tmp/ming-bench-triage-serve.log")
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.set_defaults(safety="on", kv_unified=False, prefill_chunk=None, backend=None)  # bench/serve.py's start_server
    args = ap.parse_args()

    plain = run(args, triage=False)
    judged = run(args, triage=True)
    asked = [r["safety"]["triage_model"] for r in judged if r["safety"] and "triage_model" in r["safety"]]
    med = statistics.median
    print(f"model {args.model_path or 'default'}, --max-batch {args.max_batch}, {args.n} routine questions one at a "
          f"time, max_tokens {args.max_tokens}, greedy")
    print(f"{'server':<28}{'TTFT median':>12}{'TTFT max':>10}{'request median':>16}")
    for name, rs in (("without --triage-model", plain), ("with --triage-model", judged)):
        print(f"{name:<28}{med(r['ttft'] for r in rs):>11.2f}s{max(r['ttft'] for r in rs):>9.2f}s"
              f"{med(r['seconds'] for r in rs):>15.2f}s")
    if asked:
        print(f"model step (ming_safety.triage_model.seconds): median {med(a['seconds'] for a in asked):.2f} s, "
              f"max {max(a['seconds'] for a in asked):.2f} s over {len(asked)} requests; prompt "
              f"{min(a['prompt_tokens'] for a in asked)}-{max(a['prompt_tokens'] for a in asked)} tokens; "
              f"escalated {sum(a['fired'] for a in asked)}/{len(asked)} at p(是) >= {args.threshold}")
    last = judged[-1]["safety"]
    print("last response's ming_safety (excerpt):",
          json.dumps({k: last[k] for k in ("action", "triage_step", "triage_model") if k in last}, ensure_ascii=False))
    print(f"TTFT ratio with/without: {med(r['ttft'] for r in judged) / med(r['ttft'] for r in plain):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
