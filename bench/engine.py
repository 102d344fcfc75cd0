"""Side-by-side CPU engine benchmark on the embedded models (issue: fast CPU engine; issue 15: 1.5B next to 0.5B).

    .venv/bin/python bench/engine.py                 # full run (~10 min on 2 quiet cores)
    .venv/bin/python bench/engine.py --quick         # 1 round, fewer tokens, short consultation
    .venv/bin/python bench/engine.py --quick --skip hf,consult,busy   # just the models' decode speed and memory

The engine rows run `--model` (default `base`, the embedded model under the default); `--also` adds llama.cpp rows
for the other embedded models (default: all of them), MING-lite (LoRA on the 0.5B) and a synthetic rank-8 LoRA on
every linear layer of the 1.5B (zero B matrices, so the answer is the base's; it measures the runtime LoRA's cost).

One run measures, each engine in its own process (clean peak RSS), rounds interleaved so machine
noise hits every engine alike (min / median over rounds):
  1. decode tok/s, time to first token (TTFT) and peak RSS: transformers fp32, transformers bf16,
     llama.cpp (the default CPU path);
  2. this machine's streaming read bandwidth (1 and N threads) and, from the bytes of weights read per
     generated token, each engine's decode bound and its fraction of it;
  3. TTFT at turns 1, 5 and 10 of a scripted consultation (~60 tokens a turn), with and without KV reuse;
  4. decode speed while a bounded busy loop holds one core: the default policy (adaptive threads: the free
     cores, OpenMP's default wait), all cores fixed with OpenMP's default wait and with PASSIVE, and one
     thread — against the quiet one-thread speed;
  5. optionally (--variants q4_0,q8_0) re-quantized copies of the same weights: speed and perplexity on
     real medical text (shared/data huatuo26m_qa dev answers).
Targets (issue 9): default ≥ 2.5× transformers fp32 and ≥ 60% of its bound; busy ≥ 0.8× quiet
1-thread; turn-10 TTFT ≤ 1.5× turn-1 TTFT with reuse. Prints a table and writes JSON (--out)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from ming import envs, lite, models
from ming.models import embedded

PROMPT = ("请详细介绍高血压的病因、常见症状、诊断标准、治疗方法和日常生活中的预防措施，"
          "分点说明，每一点都要具体。患者男，56岁，近半年头晕，偶有心悸，血压最高165/100 mmHg，"
          "有吸烟史二十年，父亲有高血压和脑卒中病史。请给出系统的建议。")
SYSTEM = "你是一名经验丰富的全科医生，请进行问诊，回答准确、简洁。"
QUESTIONS = ["我最近总是头痛，持续三天了。", "主要是后脑勺痛，下午更明显。", "没有发烧，也没有呕吐。",
             "量过血压，150/95。", "平时工作压力大，睡眠不好。", "以前没有查过血脂和血糖。",
             "父亲有高血压。", "需要吃降压药吗？", "饮食上要注意什么？", "多久复查一次？"]


# -------------------------------------------------------------------------------------------------
# worker: one engine in its own process, answering JSON commands on stdin
# -------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bytes_per_token(engine) -> int:
    """Weight bytes read to generate one token (the token embedding contributes one row)."""
    if engine.backend == "llamacpp":
        import gguf

        r = gguf.GGUFReader(engine.path)
        total = 0
        for t in r.tensors:
            if t.name == "token_embd.weight":
                total += int(t.n_bytes) // int(t.shape[-1])  # one row
            else:
                total += int(t.n_bytes)
        if not any(t.name == "output.weight" for t in r.tensors):  # tied: output reads the whole embedding
            total += sum(int(t.n_bytes) for t in r.tensors if t.name == "token_embd.weight")
        return total
    m = engine.model
    emb = m.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in m.parameters())
    tied = m.get_output_embeddings() is not None and m.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    if not tied:
        total -= emb.numel() * emb.element_size()  # the input embedding: one row per token
    return total


def _torch_threads():
    import torch

    return torch.get_num_threads()


def _decode(engine, gen, prompt_ids):
    engine.reset_cache()
    t0 = time.perf_counter()
    first = None
    last = None
    for ch in engine.stream(prompt_ids, gen):
        if first is None:
            first = time.perf_counter()
        last = ch
    t1 = time.perf_counter()
    n = last.completion_tokens
    return {"ttft": first - t0, "tok_s": (n - 1) / (t1 - first) if n > 1 else 0.0, "tokens": n}


def _consult(engine, gen, turns):
    """TTFT per turn of a scripted consultation; answers are the model's own (greedy)."""
    engine.reset_cache()
    msgs = [{"role": "system", "content": SYSTEM}]
    out = []
    for q in QUESTIONS[:turns]:
        msgs.append({"role": "user", "content": q})
        ids = engine.render(msgs).ids
        t0 = time.perf_counter()
        first, parts, last = None, [], None
        for ch in engine.stream(ids, gen):
            if first is None:
                first = time.perf_counter()
            parts.append(ch.text)
            last = ch
        out.append({"ttft": first - t0, "prompt": last.prompt_tokens, "cached": last.cached_tokens})
        msgs.append({"role": "assistant", "content": "".join(parts)})
    return out


def _perplexity(engine, texts, max_tokens):
    import math

    nll, n = 0.0, 0
    for t in texts:
        ids = engine.tokenizer.encode(t, add_special_tokens=False)[:max_tokens]
        if len(ids) < 8:
            continue
        engine.reset_cache()
        nll -= engine.loglikelihood(ids[:1], ids[1:])
        n += len(ids) - 1
    return math.exp(nll / n), n


def worker(spec: dict) -> None:
    from ming.config import ModelOptions
    from ming.engine import GenerationConfig, create_engine

    t0 = time.perf_counter()
    opts = ModelOptions(model_path=spec.get("model"), backend=spec["backend"], dtype=spec.get("dtype", "auto"),
                        threads=spec.get("threads"), device="cpu", prefix_cache=True)
    engine = create_engine(opts)
    load_s = time.perf_counter() - t0
    prompt_ids = engine.render([{"role": "user", "content": PROMPT}]).ids
    info = {"load_s": load_s, "bytes_per_token": _bytes_per_token(engine), "prompt_tokens": len(prompt_ids),
            "threads": getattr(engine, "threads", None) or _torch_threads()}
    _decode(engine, GenerationConfig(max_new_tokens=4, temperature=0), prompt_ids)  # warm-up
    print(json.dumps({"ready": info}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        if cmd["op"] == "decode":
            res = _decode(engine, GenerationConfig(max_new_tokens=cmd["tokens"], temperature=0), prompt_ids)
        elif cmd["op"] == "consult":
            engine.prefix_cache = cmd["reuse"]
            res = {"turns": _consult(engine, GenerationConfig(max_new_tokens=cmd["answer_tokens"], temperature=0),
                                     cmd["turns"])}
            engine.prefix_cache = True
        elif cmd["op"] == "ppl":
            ppl, n = _perplexity(engine, cmd["texts"], cmd["max_tokens"])
            res = {"ppl": ppl, "tokens": n}
        else:
            res = {"error": f"unknown op {cmd['op']}"}
        res["rss_mb"] = _rss_mb()
        print(json.dumps(res), flush=True)


class Worker:
    def __init__(self, name: str, spec: dict, env: dict | None = None):
        self.name, self.spec = name, spec
        e = dict(os.environ)
        e.pop("OMP_WAIT_POLICY", None)  # as `ming chat/serve/eval` run: OpenMP's default wait, adaptive threads
        e.update(spec.pop("env", None) or {})
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        self.p = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=e)
        self.info = self._read()["ready"]

    def _read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit {self.p.wait()})")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.p.stdin.write('{"op": "quit"}\n')
            self.p.stdin.flush()
            self.p.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.p.kill()


# -------------------------------------------------------------------------------------------------
# machine measurements
# -------------------------------------------------------------------------------------------------
def bandwidth(threads: int, mb: int = 1024, repeats: int = 5) -> float:
    """Streaming read bandwidth in GB/s: `threads` threads each summing their share of a large array."""
    import numpy as np

    a = np.ones(mb * 1024 * 1024 // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = 0.0
    for _ in range(repeats):
        ts = [threading.Thread(target=np.add.reduce, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = max(best, a.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def synthetic_lora(model, rank: int = 8) -> Path:
    """A PEFT LoRA folder for an embedded model: rank `rank` on every linear layer, random A, zero B (so it leaves
    the answers unchanged), written once under MING_HOME/bench. Measures what a runtime adapter costs."""
    out = envs.ming_home() / "bench" / f"lora-r{rank}-{model.key}"
    if (out / "adapter_model.safetensors").is_file():
        return out
    import torch
    from safetensors.torch import save_file

    from ming.models import gguf_meta

    meta = gguf_meta.read_metadata(embedded.ensure_gguf(model, show_progress=False))
    heads, kv = int(meta["qwen2.attention.head_count"]), int(meta["qwen2.attention.head_count_kv"])
    hidden, ffn = int(meta["qwen2.embedding_length"]), int(meta["qwen2.feed_forward_length"])
    kv_dim = hidden // heads * kv
    shapes = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (hidden, kv_dim),
              "self_attn.v_proj": (hidden, kv_dim), "self_attn.o_proj": (hidden, hidden),
              "mlp.gate_proj": (hidden, ffn), "mlp.up_proj": (hidden, ffn), "mlp.down_proj": (ffn, hidden)}
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(int(meta["qwen2.block_count"])):
        for mod, (fan_in, fan_out) in shapes.items():
            pre = f"base_model.model.model.layers.{layer}.{mod}"
            tensors[f"{pre}.lora_A.weight"] = (torch.randn(rank, fan_in, generator=g) * 0.01).to(torch.bfloat16)
            tensors[f"{pre}.lora_B.weight"] = torch.zeros(fan_out, rank, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
           "bias": "none", "base_model_name_or_path": f"embedded:{model.key}", "fan_in_fan_out": False,
           "target_modules": sorted({m.split(".")[-1] for m in shapes})}
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return out


def busy_loop(seconds: float) -> subprocess.Popen:
    """A bounded busy loop holding one core (exits by itself after `seconds`)."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def stats(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


# -------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per decode measurement")
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--answer-tokens", type=int, default=40, help="answer length per consultation turn")
    ap.add_argument("--quick", action="store_true", help="1 round, 48 tokens, 5-turn consultation, no bf16")
    ap.add_argument("--skip", default="",
                    help="comma list of parts to skip: hf,bf16,onethread,passive,lite,lora15,consult,busy")
    ap.add_argument("--model", default="base", help="the weights of the engine rows (default: base)")
    ap.add_argument("--also", default=",".join(embedded.MODELS),
                    help="embedded models measured on llama.cpp next to --model (default: %(default)s)")
    ap.add_argument("--variants", default="", help="re-quantized copies to compare, e.g. q4_0,q8_0 (q4_k_s:q4_k: "
                                               "with the output layer in Q4_K)")
    ap.add_argument("--ppl-texts", type=int, default=40, help="medical answers for the perplexity check")
    ap.add_argument("--out", default="runs/bench-engine.json")
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.quick:
        args.rounds, args.tokens, args.turns = 1, 48, 5
        args.skip += ",bf16"
    skip = set(filter(None, args.skip.split(",")))
    from ming.engine import threads as thread_policy

    ncores = thread_policy.default_threads()
    results: dict = {"machine": {"cores": ncores, "load_avg_start": os.getloadavg()}, "args": vars(args)}
    print(f"[bench] {ncores} cores, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)

    # the same weights in the engine rows (--model, default the embedded model under the default); the other
    # embedded models and the LoRA rows on llama.cpp next to them
    main_model = args.model
    specs = {"llama.cpp (default)": {"backend": "llamacpp", "model": main_model}}
    if "onethread" not in skip:
        specs["llama.cpp, 1 thread"] = {"backend": "llamacpp", "model": main_model, "threads": 1}
    if "passive" not in skip:
        specs["llama.cpp, OMP_WAIT_POLICY=PASSIVE"] = {"backend": "llamacpp", "model": main_model,
                                                       "env": {"OMP_WAIT_POLICY": "PASSIVE"}}
    if "hf" not in skip:
        specs["transformers fp32"] = {"backend": "hf", "dtype": "float32", "model": main_model}
        if "bf16" not in skip:
            specs["transformers bf16"] = {"backend": "hf", "dtype": "bfloat16", "model": main_model}
    main_key = models.embedded_key(main_model)
    for key in filter(None, args.also.split(",")):
        if embedded.get(key).key != main_key:  # the default row is that model already
            specs[f"llama.cpp {embedded.get(key).key.upper()}"] = {"backend": "llamacpp", "model": key}
    if lite.available() and "lite" not in skip:
        specs["llama.cpp 0.5B + MING-lite LoRA"] = {"backend": "llamacpp", "model": "ming-lite"}
    if "lora15" not in skip:
        specs["llama.cpp 1.5B + LoRA r8 (synthetic)"] = {"backend": "llamacpp",
                                                         "model": str(synthetic_lora(embedded.get("1.5b")))}
    variants = [v for v in args.variants.split(",") if v]
    variant_files = {}
    if variants:
        from ming.models.convert import convert

        requant = embedded.get(main_key or "0.5b")
        for v in variants:  # OUTTYPE or OUTTYPE:OUTPUT_TYPE (e.g. q4_k_s:q4_k, the output layer in Q4_K)
            outtype, _, output_type = v.partition(":")
            f = envs.ming_home() / "models" / f"{requant.name}-requant-{v.replace(':', '-output-')}.gguf"
            if not f.exists():
                print(f"[bench] re-quantizing {requant.title} to {v} -> {f}", file=sys.stderr)
                convert(requant.key, f, outtype, output_type=output_type or None)
            variant_files[v] = str(f)
            specs[f"llama.cpp {v} (re-quantized)"] = {"backend": "llamacpp", "model": str(f)}

    workers = {}
    for name, spec in specs.items():
        print(f"[bench] starting {name} …", file=sys.stderr)
        workers[name] = Worker(name, spec)
    # 1. decode / TTFT, rounds interleaved
    dec = {n: [] for n in workers}
    for r in range(args.rounds):
        for n, w in workers.items():
            dec[n].append(w.ask(op="decode", tokens=args.tokens))
        print(f"[bench] round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {dec[n][-1]['tok_s']:.1f}" for n in dec),
              file=sys.stderr)
    # 2. bandwidth (measured between the engine rounds, same run)
    bw1 = bandwidth(1)
    bwn = bandwidth(ncores)
    results["machine"].update(bandwidth_1t_gbs=bw1, bandwidth_all_gbs=bwn)
    engines = {}
    for n, w in workers.items():
        tok = [d["tok_s"] for d in dec[n]]
        bound = bwn * 1e9 / w.info["bytes_per_token"]
        engines[n] = {"tok_s": stats(tok), "ttft_s": stats([d["ttft"] for d in dec[n]]),
                      "tokens": dec[n][-1]["tokens"], "peak_rss_mb": max(d["rss_mb"] for d in dec[n]),
                      "bytes_per_token_mb": w.info["bytes_per_token"] / 1e6, "bound_tok_s": bound,
                      "fraction_of_bound": statistics.median(tok) / bound, "load_s": w.info["load_s"],
                      "threads": w.info["threads"]}
    results["engines"] = engines
    # 3. consultation TTFT with / without reuse
    if "consult" not in skip:
        cons = {}
        for n, w in workers.items():
            if "bf16" in n or "re-quantized" in n or "MING-lite" in n or "thread" in n or "PASSIVE" in n:
                continue
            for reuse in (True, False):
                runs = [w.ask(op="consult", reuse=reuse, turns=args.turns, answer_tokens=args.answer_tokens)["turns"]
                        for _ in range(max(1, args.rounds - 1))]
                per_turn = [stats([run[i]["ttft"] for run in runs]) for i in range(args.turns)]
                cons[f"{n} | reuse={'on' if reuse else 'off'}"] = {
                    "ttft": per_turn, "prompt_tokens": [t["prompt"] for t in runs[0]],
                    "cached_tokens": [t["cached"] for t in runs[0]]}
            print(f"[bench] consultation done: {n}", file=sys.stderr)
        results["consultation"] = cons
    # 5. perplexity of re-quantized variants vs the shipped file
    if variants:
        d = envs.data_dir()
        if d is None:
            print("[bench] no shared data folder: perplexity skipped", file=sys.stderr)
        else:
            texts = []
            with open(d / "huatuo26m_qa" / "dev.jsonl", encoding="utf-8") as f:
                for line in f:
                    texts.append(json.loads(line)["answer"])
                    if len(texts) >= args.ppl_texts:
                        break
            for n, w in workers.items():
                if n.startswith("llama.cpp"):
                    engines[n]["perplexity"] = w.ask(op="ppl", texts=texts, max_tokens=256)
    for w in workers.values():
        w.close()
    # 4. one core busy (fresh workers: the OpenMP wait policy is read when a process starts)
    if "busy" not in skip:
        base = {"backend": "llamacpp", "model": main_model}
        # every configuration in its own process, all loaded first; then, each round, the quiet one-thread row
        # with the machine quiet and every busy row while one bounded busy loop holds a core, so the host's own
        # speed changes hit all rows alike. The fixed two-thread default-wait row collapses: it decodes 16 tokens.
        n_tok, n_rounds = args.tokens // 2, max(2, args.rounds - 1)
        cfgs = [("quiet, 1 thread", dict(base, threads=1), {}, n_tok),
                (f"busy, default (adaptive: up to {ncores} threads, only free cores)", base, {}, n_tok),
                (f"busy, {ncores} threads fixed, OMP_WAIT_POLICY=PASSIVE", dict(base, threads=ncores),
                 {"OMP_WAIT_POLICY": "PASSIVE"}, n_tok),
                (f"busy, {ncores} threads fixed, OpenMP default wait", dict(base, threads=ncores), {}, 16),
                ("busy, 1 thread", dict(base, threads=1), {}, n_tok)]
        bw = {name: Worker(name, spec, env) for name, spec, env, _ in cfgs}
        runs = {name: [] for name in bw}
        try:
            for r in range(n_rounds):
                for name, _, _, tokens in cfgs:
                    if name.startswith("quiet"):
                        runs[name].append(bw[name].ask(op="decode", tokens=tokens)["tok_s"])
                hog = busy_loop(300)
                try:
                    time.sleep(0.5)
                    for name, _, _, tokens in cfgs:
                        if name.startswith("busy"):
                            runs[name].append(bw[name].ask(op="decode", tokens=tokens)["tok_s"])
                finally:
                    hog.kill()
                    hog.wait()
                done = ", ".join(f"{n} {v[-1]:.1f}" for n, v in runs.items())
                print(f"[bench] busy round {r + 1}/{n_rounds}: {done}", file=sys.stderr)
        finally:
            for w in bw.values():
                w.close()
        busy = {name: stats(v) for name, v in runs.items()}
        results["busy"] = busy
    results["machine"]["load_avg_end"] = os.getloadavg()
    report(results, ncores)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\n(JSON: {out})")
    return 0


def report(res: dict, ncores: int) -> None:
    m = res["machine"]
    print(f"\nmachine: {ncores} cores; streaming read {m['bandwidth_1t_gbs']:.1f} GB/s (1 thread), "
          f"{m['bandwidth_all_gbs']:.1f} GB/s ({ncores} threads); load average {m['load_avg_start'][0]:.1f} at start, "
          f"{m['load_avg_end'][0]:.1f} at end")
    eng = res["engines"]
    print("\n| engine | threads | decode tok/s (min / median) | TTFT s (min / median) | peak RSS | MB read/token | "
          "bound tok/s | of bound | load s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, e in eng.items():
        ppl = f" (ppl {e['perplexity']['ppl']:.2f})" if "perplexity" in e else ""
        print(f"| {n}{ppl} | {e['threads']} | {e['tok_s']['min']:.1f} / {e['tok_s']['median']:.1f} | "
              f"{e['ttft_s']['min']:.2f} / {e['ttft_s']['median']:.2f} | {e['peak_rss_mb'] / 1024:.2f} GB | "
              f"{e['bytes_per_token_mb']:.0f} | {e['bound_tok_s']:.0f} | {e['fraction_of_bound']:.0%} | {e['load_s']:.1f} |")
    default = eng["llama.cpp (default)"]
    lines = []
    if "transformers fp32" in eng:
        r = default["tok_s"]["median"] / eng["transformers fp32"]["tok_s"]["median"]
        lines.append(f"default CPU path vs transformers fp32: {r:.2f}x (target >= 2.5x) "
                     f"{'OK' if r >= 2.5 else 'MISSED'}")
    f = default["fraction_of_bound"]
    lines.append(f"default CPU path at {f:.0%} of its decode bound (target >= 60%) {'OK' if f >= 0.6 else 'MISSED'}")
    one = eng.get("llama.cpp, 1 thread")
    if one:  # is decoding limited by memory bandwidth or by the kernels' arithmetic?
        mb = default["bytes_per_token_mb"]
        one_gbs, all_gbs = one["tok_s"]["median"] * mb / 1e3, default["tok_s"]["median"] * mb / 1e3
        lines.append(f"llama.cpp streams {one_gbs:.1f} GB/s of weights on 1 thread (the machine reads "
                     f"{m['bandwidth_1t_gbs']:.1f}), {all_gbs:.1f} GB/s on {default['threads']} "
                     f"(of {m['bandwidth_all_gbs']:.1f}); "
                     f"{default['tok_s']['median'] / one['tok_s']['median']:.2f}x from the second thread")
    passive = eng.get("llama.cpp, OMP_WAIT_POLICY=PASSIVE")
    if passive:
        lines.append(f"OMP_WAIT_POLICY=PASSIVE vs the default wait, quiet: "
                     f"{passive['tok_s']['median'] / default['tok_s']['median']:.2f}x")
    if "consultation" in res:
        print("\n| consultation (TTFT s, median) | turn 1 | turn 5 | turn 10 | prompt tokens at turn 10 | cached |")
        print("|---|---|---|---|---|---|")
        for n, c in res["consultation"].items():
            t = c["ttft"]
            pick = [t[i]["median"] if i < len(t) else float("nan") for i in (0, 4, 9)]
            last = len(t) - 1
            print(f"| {n} | {pick[0]:.2f} | {pick[1]:.2f} | {pick[2]:.2f} | {c['prompt_tokens'][last]} | "
                  f"{c['cached_tokens'][last]} |")
        key = "llama.cpp (default) | reuse=on"
        if key in res["consultation"]:
            t = res["consultation"][key]["ttft"]
            r = t[-1]["median"] / t[0]["median"]
            lines.append(f"turn-{len(t)} / turn-1 TTFT with reuse (default path): {r:.2f}x (target <= 1.5x) "
                         f"{'OK' if r <= 1.5 else 'MISSED'}")
    if "busy" in res:
        b = res["busy"]
        print("\n| one core busy (llama.cpp) | decode tok/s (min / median) |")
        print("|---|---|")
        for n, s in b.items():
            print(f"| {n} | {s['min']:.1f} / {s['median']:.1f} |")
        quiet = b["quiet, 1 thread"]["median"]
        dflt = next(v for k, v in b.items() if k.startswith("busy, default"))["median"]
        lines.append(f"one core busy, default policy vs quiet 1 thread: {dflt / quiet:.2f}x (target >= 0.8x) "
                     f"{'OK' if dflt / quiet >= 0.8 else 'MISSED'}")
    print("\n" + "\n".join("- " + s for s in lines))


if __name__ == "__main__":
    raise SystemExit(main())
