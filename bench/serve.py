"""Benchmark `ming serve`: 1, 2, 4, 8 and 16 concurrent streaming clients against a server on 127.0.0.1.

Starts `ming serve` itself, once per --max-batch value (the embedded default model unless --model-path), or
targets a running one (--url). For each concurrency level it sends a bounded number of streaming chat
requests and prints requests/s, aggregate output tokens/s, TTFT p50 / p95, the median per-stream decode rate,
and the server's peak RSS; then the ratio of aggregate throughput at 8 clients to 1 client for each server,
side by side (1.0 = the engine serialises; > 1 = batching helps).

    .venv/bin/python bench/serve.py                                   # default model, --max-batch 1 and 8
    .venv/bin/python bench/serve.py --model-path 0.5b --max-batch 1,4,8,16
    .venv/bin/python bench/serve.py --url http://127.0.0.1:8000       # an already running server
    .venv/bin/python bench/serve.py --eval-items 16                   # + ming eval --batch-size 1 vs 8 over HTTP
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


def start_server(args, max_batch: int, invariant: bool = False, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """`ming serve` with the bench's settings (and `extra` flags), once /health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "ming", "serve", "--port", str(port), "--max-queue", "64",
           "--safety", args.safety, "--max-batch", str(max_batch),
           "--triage-probe" if args.triage_probe else "--no-triage-probe", *extra]
    if invariant:
        cmd += ["--batch-invariant"]
    if args.kv_unified:
        cmd += ["--kv-unified"]
    if args.prefill_chunk:
        cmd += ["--prefill-chunk", str(args.prefill_chunk)]
    if args.context_length:
        cmd += ["--context-length", str(args.context_length)]
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
    seconds = time.perf_counter() - t0
    rate = (tokens - 1) / (seconds - ttft) if ttft is not None and tokens > 1 and seconds > ttft else None
    return {"status": status, "ttft": ttft, "tokens": tokens, "seconds": seconds, "stream_tok_s": rate}


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
    rates = [r["stream_tok_s"] for r in ok if r["stream_tok_s"] is not None]
    tokens = sum(r["tokens"] for r in ok)
    return {"clients": clients, "requests": len(results), "ok": len(ok), "wall_s": wall,
            "req_per_s": len(ok) / wall, "out_tok_per_s": tokens / wall, "tokens": tokens,
            "ttft_p50": _pct(ttfts, 50), "ttft_p95": _pct(ttfts, 95),
            "stream_tok_s_p50": statistics.median(rates) if rates else float("nan")}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB; nan where /proc is not readable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run_eval(url: str, args, batch_size: int, out: Path) -> tuple[float, dict]:
    """`ming eval` over HTTP against the server; (wall seconds, {item id: extracted answer})."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "ming", "eval", args.eval_task, "--base-url", url + "/v1", "--limit",
           str(args.eval_items), "--batch-size", str(batch_size), "--output", str(out), "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t0
    answers = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers[str(row.get("id"))] = (row.get("pred"), row.get("output"))
    return wall, answers


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1]


def bench_server(url: str, proc, args, levels: list[int]) -> dict:
    health = httpx.get(url + "/health", timeout=10).json()
    print(f"\nserver {url}: model {health['model']} · backend {health['backend']} · safety {health['safety']} · "
          f"workers {health['queue']['workers']} · batch {health.get('batch') or '-'} · {os.cpu_count()} CPUs")
    print(f"{args.requests} streaming requests per level (at least one per client), max_tokens {args.max_tokens}, "
          f"temperature {args.temperature}, load average before {os.getloadavg()[0]:.2f}")
    asyncio.run(run_level(url, 1, 1, args))  # warm-up (loads caches, first-call costs)
    rows = []
    print(f"{'clients':>7} {'ok':>5} {'wall s':>7} {'req/s':>7} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p95':>9} "
          f"{'stream tok/s':>12} {'peak RSS':>9}")
    for c in levels:
        r = asyncio.run(run_level(url, c, max(args.requests, c), args))
        r["peak_rss_mb"] = peak_rss_mb(proc.pid) if proc is not None else float("nan")
        rows.append(r)
        print(f"{c:>7} {r['ok']:>2}/{r['requests']:<2} {r['wall_s']:>7.2f} {r['req_per_s']:>7.3f} "
              f"{r['out_tok_per_s']:>10.2f} {r['ttft_p50']:>8.2f}s {r['ttft_p95']:>8.2f}s "
              f"{r['stream_tok_s_p50']:>12.2f} {r['peak_rss_mb']:>7.0f}MB", flush=True)
    result = {"server": health, "levels": rows}
    if args.eval_items:
        out = Path(args.eval_dir)
        t1, a1 = run_eval(url, args, 1, out / "b1")
        t8, a8 = run_eval(url, args, 8, out / "b8")
        same = sum(a1.get(k, (None,))[0] == v[0] for k, v in a8.items())
        texts = sum(a1.get(k) == v for k, v in a8.items())
        print(f"ming eval {args.eval_task} --limit {args.eval_items} over HTTP: --batch-size 1 {t1:.1f} s, "
              f"--batch-size 8 {t8:.1f} s = {t1 / t8:.2f}x; scored answers identical {same}/{len(a8)}, "
              f"whole texts identical {texts}/{len(a8)}")
        result["eval"] = {"batch1_s": t1, "batch8_s": t8, "speedup": t1 / t8, "identical_answers": same,
                          "identical_texts": texts, "items": len(a8)}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="benchmark this running server instead of starting one")
    ap.add_argument("--model-path", default=None, help="model for the started server (default: the embedded one)")
    ap.add_argument("--backend", default=None, help="backend for the started server (default: auto)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the started server")
    ap.add_argument("--max-batch", default="1,8", help="servers to start, one per --max-batch value (default 1,8)")
    ap.add_argument("--kv-unified", action="store_true", help="start the servers with --kv-unified")
    ap.add_argument("--kernels", default="repacked", help="repacked, invariant or both (comma-separated): each "
                    "batching server is started with serve's default kernels, with --batch-invariant, or both")
    ap.add_argument("--prefill-chunk", type=int, default=None, help="start the servers with this --prefill-chunk")
    ap.add_argument("--context-length", type=int, default=None, help="start the servers with this --context-length")
    ap.add_argument("--safety", default="on", choices=["on", "off", "strict"])
    ap.add_argument("--triage-probe", action="store_true",
                    help="start the servers with the triage probe (off by default in `ming serve` since session 14, "
                         "and here: it adds ~0.5 s of CPU per request whose rules are silent, one request at a time; "
                         "docs/triage.md). The n-gram step, on in `ming serve`, runs here too (~0.1 ms a request)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--concurrency", default="1,2,4,8,16", help="comma-separated client counts (default 1,2,4,8,16)")
    ap.add_argument("--requests", type=int, default=8, help="requests per level (at least the client count)")
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request (default 64)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--eval-items", type=int, default=0, help="also time `ming eval TASK --limit N` over HTTP with "
                                                                "--batch-size 1 and 8 (0 = skip)")
    ap.add_argument("--eval-task", default="cmexam", help="the task for --eval-items (default cmexam)")
    ap.add_argument("--eval-dir", default="runs/bench-serve-eval")
    ap.add_argument("--request-timeout", type=float, default=900)
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--server-log", default="/tmp/ming-bench-serve.log")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]

    results = {}
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    if not kernels or set(kernels) - {"repacked", "invariant"}:
        raise SystemExit(f"--kernels takes repacked and/or invariant, got {args.kernels!r}")
    servers = [("?", 0, False)] if args.url else [
        (f"{mb}" + (" --batch-invariant" if k == "invariant" and mb > 1 else ""), mb, k == "invariant")
        for mb in (int(x) for x in args.max_batch.split(",") if x.strip())
        for k in (kernels if mb > 1 else kernels[:1])]
    for label, mb, invariant in servers:
        print(f"\n== --max-batch {label}", flush=True)
        proc, url = (None, args.url.rstrip("/")) if args.url else start_server(args, mb, invariant)
        try:
            results[label] = bench_server(url, proc, args, levels)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print("\naggregate output tokens/s relative to one client on the same server:")
    for mb, res in results.items():
        by = {r["clients"]: r for r in res["levels"]}
        base = by.get(1, {}).get("out_tok_per_s") or float("nan")
        cells = "  ".join(f"{c} clients {r['out_tok_per_s'] / base:.2f}x" for c, r in by.items())
        print(f"  --max-batch {mb}: {cells}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "servers": results}, ensure_ascii=False,
                                                  indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
