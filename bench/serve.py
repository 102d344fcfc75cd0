"""Benchmark `ming serve`: 1, 4 and 8 concurrent streaming clients against a server on 127.0.0.1.

Starts `ming serve` itself (the embedded model unless --model-path) or targets a running one (--url).
For each concurrency level it sends a bounded number of streaming chat requests and prints
requests/s, aggregate output tokens/s, p50 / p95 time to first token, and the ratio of aggregate
throughput at 8 clients to 1 client (1.0 = the engine serialises; > 1 = batching helps).

    .venv/bin/python bench/serve.py                              # embedded model, 8 requests per level
    .venv/bin/python bench/serve.py --max-tokens 32 --requests 8
    .venv/bin/python bench/serve.py --url http://127.0.0.1:8000  # an already running server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

QUESTIONS = [
    "我最近总是头痛，晚上睡不好，应该怎么办？",
    "高血压患者平时饮食要注意什么？",
    "孩子咳嗽一周了，有痰，需要去医院吗？",
    "体检发现总胆固醇偏高，该怎么调整生活方式？",
    "经常胃胀反酸，可能是什么原因？",
    "糖尿病人可以吃水果吗？",
    "膝盖爬楼梯时疼，是关节炎吗？",
    "感冒后一直流鼻涕怎么办？",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "ming", "serve", "--port", str(port), "--max-queue", "64",
           "--safety", args.safety]
    if args.model_path:
        cmd += ["--model-path", args.model_path]
    if args.backend:
        cmd += ["--backend", args.backend]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    log = open(args.server_log, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited (code {proc.returncode}); see {args.server_log}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server did not start within {args.start_timeout} s; see {args.server_log}")


async def one_request(client: httpx.AsyncClient, url: str, i: int, args) -> dict:
    body = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}], "stream": True,
            "max_tokens": args.max_tokens, "temperature": args.temperature, "seed": i,
            "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    t0 = time.perf_counter()
    ttft, tokens, status = None, 0, None
    async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
        status = r.status_code
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            for ch in ev.get("choices") or []:
                if ttft is None and (ch.get("delta") or {}).get("content"):
                    ttft = time.perf_counter() - t0
    return {"status": status, "ttft": ttft, "tokens": tokens, "seconds": time.perf_counter() - t0}


async def run_level(url: str, clients: int, n_requests: int, args) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(n_requests):
        queue.put_nowait(i)
    results = []

    async def worker(client):
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results.append(await one_request(client, url, i, args))

    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["status"] == 200]
    ttfts = sorted(r["ttft"] for r in ok if r["ttft"] is not None)
    tokens = sum(r["tokens"] for r in ok)
    return {"clients": clients, "requests": len(results), "ok": len(ok), "wall_s": wall,
            "req_per_s": len(ok) / wall, "out_tok_per_s": tokens / wall, "tokens": tokens,
            "ttft_p50": _pct(ttfts, 50), "ttft_p95": _pct(ttfts, 95)}


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="benchmark this running server instead of starting one")
    ap.add_argument("--model-path", default=None, help="model for the started server (default: the embedded one)")
    ap.add_argument("--backend", default=None, help="backend for the started server (default: auto)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the started server")
    ap.add_argument("--safety", default="on", choices=["on", "off", "strict"])
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--concurrency", default="1,4,8", help="comma-separated client counts (default 1,4,8)")
    ap.add_argument("--requests", type=int, default=8, help="requests per level (at least the client count)")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens per request (default 32)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--request-timeout", type=float, default=600)
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--server-log", default="/tmp/ming-bench-serve.log")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    proc = None
    url = args.url.rstrip("/") if args.url else None
    if url is None:
        proc, url = start_server(args)
    try:
        health = httpx.get(url + "/health", timeout=10).json()
        print(f"server {url}: model {health['model']} · backend {health['backend']} · safety {health['safety']} · "
              f"workers {health['queue']['workers']} · {os.cpu_count()} CPUs")
        print(f"{args.requests} streaming requests per level, max_tokens {args.max_tokens}, "
              f"temperature {args.temperature}")
        asyncio.run(run_level(url, 1, 1, args))  # warm-up (loads caches, first-call costs)
        rows = []
        print(f"{'clients':>7} {'ok':>5} {'wall s':>7} {'req/s':>7} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p95':>9}")
        for c in levels:
            r = asyncio.run(run_level(url, c, max(args.requests, c), args))
            rows.append(r)
            print(f"{c:>7} {r['ok']:>2}/{r['requests']:<2} {r['wall_s']:>7.2f} {r['req_per_s']:>7.3f} "
                  f"{r['out_tok_per_s']:>10.2f} {r['ttft_p50']:>8.2f}s {r['ttft_p95']:>8.2f}s", flush=True)
        by = {r["clients"]: r for r in rows}
        if 1 in by and 8 in by and by[1]["out_tok_per_s"] > 0:
            ratio = by[8]["out_tok_per_s"] / by[1]["out_tok_per_s"]
            print(f"aggregate output throughput, 8 clients : 1 client = {ratio:.2f}x "
                  f"(TTFT p50 {by[8]['ttft_p50'] / by[1]['ttft_p50']:.1f}x longer: requests wait in the queue)")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"server": health, "args": vars(args), "levels": rows},
                                                      ensure_ascii=False, indent=2))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
