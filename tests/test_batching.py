"""Continuous batching in the llama.cpp engine (ming.engine.batch): several requests share one context and
advance together, and each gets exactly the tokens it would get alone.

Runs on a real tiny Qwen2 GGUF (quantized to q8_0, as served models are quantized, built in a fixture) with
real llama.cpp, and on the embedded 0.5B when set-up has prepared it.

Bit-identity needs the same kernels on both sides, and llama.cpp picks some by shape: repacked weights (off
for batching engines), flash attention tiled over >= 64 query rows, and split over the cache for a lone query
over >= 512 cells. The tiny-model engines therefore read prompts in chunks of < 64 tokens (n_batch=63) within
256-token windows, so what is compared is the scheduler itself: positions, sequence ids, cells, prefix
copies, per-sequence sampling. On a real model the shapes differ freely (the 0.5B test below); there a
last-bit difference could flip a greedy pick only at a near-tie (docs/serve.md)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from ming.engine import GenerationConfig
from ming.errors import MingError

pytest.importorskip("llama_cpp")

from fixtures.serve.live import LiveServer  # noqa: E402
from test_prefix_cache_llamacpp import tiny_gguf  # noqa: E402

from ming.engine import llamacpp  # noqa: E402
from ming.templates import Template  # noqa: E402

SYSTEM = "你是一名医生，请根据患者的描述给出建议。"
QUESTIONS = ["我最近总是头痛，晚上睡不好，应该怎么办？", "高血压患者平时饮食要注意什么？", "孩子咳嗽一周了，有痰",
             "体检发现总胆固醇偏高", "经常胃胀反酸，可能是什么原因？", "糖尿病人可以吃水果吗？"]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory, qwen_tokenizer):
    return tiny_gguf(tmp_path_factory, qwen_tokenizer, "q8_0")[1]


def _load(path, tok, **kw):
    kw.setdefault("context_length", 256)
    kw.setdefault("use_extra_bufts", False)
    kw.setdefault("n_batch", 63)
    return llamacpp.LlamaCppEngine(str(path), tok, Template("qwen", tok), threads=1, **kw)


@pytest.fixture(scope="module")
def alone(gguf, qwen_tokenizer):
    eng = _load(gguf, qwen_tokenizer)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def batched(gguf, qwen_tokenizer):
    eng = _load(gguf, qwen_tokenizer, max_batch=4, prefill_chunk=8)
    yield eng
    eng.close()


def _prompts(engine, questions=QUESTIONS):
    return [engine.render([{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]).ids
            for q in questions]


def _concurrently(engine, prompts, gens, stagger: float | list[float] = 0.0):
    """Each prompt in its own thread (as ming serve's workers call the engine); the chunks each one got.
    `stagger`: seconds to wait after starting each thread (one value for all, or one per thread)."""
    out: list = [None] * len(prompts)

    def go(i):
        out[i] = list(engine.stream(prompts[i], gens[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(prompts))]
    waits = stagger if isinstance(stagger, list) else [stagger] * len(threads)
    for t, wait in zip(threads, waits):
        t.start()
        time.sleep(wait)
    for t in threads:
        t.join(120)
    assert all(o is not None for o in out), "a request never finished"
    return out


def _text(chunks) -> str:
    return "".join(c.text for c in chunks)


def test_batching_engine_says_so(batched, alone):
    assert "batching" in batched.features and batched.max_concurrency == 4
    assert "batching" not in alone.features
    assert batched.kv_cells == alone.kv_cells == alone.context_length  # a window per sequence


def test_concurrent_greedy_tokens_equal_alone(alone, batched):
    prompts = _prompts(alone)
    gen = GenerationConfig(max_new_tokens=24, temperature=0)
    want = [alone.generate(p, gen) for p in prompts]
    # six requests for four slots, prompts prefilled in 8-token chunks: four start together (so steps are shared
    # however fast the machine decodes), the last two join while those decode
    waits = [0.0] * 4 + [0.02] * (len(prompts) - 4)
    got = _concurrently(batched, prompts, [gen] * len(prompts), stagger=waits)
    for w, g in zip(want, got):
        assert _text(g) == w.text
        last = g[-1]
        assert (last.finish_reason, last.completion_tokens, last.prompt_tokens) == \
            (w.finish_reason, w.completion_tokens, w.prompt_tokens)
    assert batched._runner.steps < sum(w.completion_tokens for w in want)  # steps were shared


def test_sampled_streams_never_mix(alone, batched):
    """Per-sequence seeds and settings: each request gets what it gets alone, whatever runs beside it."""
    prompts = _prompts(alone)[:4]
    gens = [GenerationConfig(max_new_tokens=20, temperature=0.9, top_p=0.95, seed=7),
            GenerationConfig(max_new_tokens=12, temperature=0),
            GenerationConfig(max_new_tokens=20, temperature=1.2, top_k=40, seed=3, repetition_penalty=1.2),
            GenerationConfig(max_new_tokens=16, temperature=0.7, seed=11, stop=("。",))]
    want = [alone.generate(p, g).text for p, g in zip(prompts, gens)]
    got = _concurrently(batched, prompts, gens)
    assert [_text(g) for g in got] == want
    assert len(set(want)) == len(want)


def test_shared_prefix_and_next_turn_reuse_cells(alone, batched):
    gen = GenerationConfig(max_new_tokens=12, temperature=0)
    p1, p2 = _prompts(alone)[:2]
    first = batched.generate(p1, gen)
    # a different question after the same system prompt copies the shared cells instead of recomputing them
    other = list(batched.stream(p2, gen))
    assert other[-1].cached_tokens > 0 and _text(other) == alone.generate(p2, gen).text
    # the client's next turn starts with its whole first exchange: reused from its slot
    turn2 = alone.render([{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]},
                          {"role": "assistant", "content": first.text}, {"role": "user", "content": "需要做什么检查？"}]).ids
    again = list(batched.stream(turn2, gen))
    assert again[-1].cached_tokens >= len(p1)
    assert _text(again) == alone.generate(turn2, gen).text


def test_cancel_and_abandon_free_the_slot(alone, batched):
    prompts = _prompts(alone)
    long = GenerationConfig(max_new_tokens=200, temperature=0.8, seed=1, stop=())
    cancel = threading.Event()
    it = batched.stream(prompts[0], long, cancel)
    first = next(it)
    cancel.set()
    rest = list(it)
    assert rest[-1].finish_reason == "cancelled" and rest[-1].completion_tokens < 200
    # a consumer that stops reading (the client went away) leaves at the next step
    gen = batched.stream(prompts[1], long)
    next(gen)
    gen.close()
    deadline = time.monotonic() + 10
    while batched.batch_stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batched.batch_stats()["running"] == 0 and first is not None
    # the slots are usable again and give the same tokens as alone
    g = GenerationConfig(max_new_tokens=10, temperature=0)
    assert batched.generate(prompts[2], g).text == alone.generate(prompts[2], g).text


def test_shared_pool_waits_for_cells_and_answers_all(gguf, qwen_tokenizer, alone):
    """--kv-unified: four slots but a pool with cells for about two requests. The others wait for cells, then
    run; nothing is lost, and (cells freed and refilled) each answer is still complete."""
    prompts = _prompts(alone)[:5]
    gen = GenerationConfig(max_new_tokens=30, temperature=0)
    need = max(len(p) for p in prompts) + 30
    eng = _load(gguf, qwen_tokenizer, max_batch=4, kv_unified=True, context_length=128, kv_cells=2 * need + 4)
    peak = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak.append(eng.batch_stats()["running"])
            time.sleep(0.002)

    w = threading.Thread(target=watch)
    w.start()
    try:
        assert eng.kv_cells < 3 * need
        got = _concurrently(eng, prompts, [gen] * len(prompts))
        want = [alone.generate(p, gen) for p in prompts]
        for g, x in zip(got, want):
            assert g[-1].finish_reason == x.finish_reason and g[-1].completion_tokens == x.completion_tokens
        assert 1 <= max(peak) <= 2  # admission by free cells, not by free slots
    finally:
        stop.set()
        w.join()
        eng.close()


def test_bad_settings_and_too_long_prompts_are_clear_errors(gguf, qwen_tokenizer, batched):
    with pytest.raises(MingError, match="--kv-cells"):
        _load(gguf, qwen_tokenizer, max_batch=2, kv_cells=100, kv_unified=True)
    with pytest.raises(MingError, match="--kv-unified"):
        _load(gguf, qwen_tokenizer, max_batch=2, kv_cells=1000)
    with pytest.raises(MingError, match="--max-batch"):
        _load(gguf, qwen_tokenizer, max_batch=0)
    with pytest.raises(MingError, match="context window"):
        list(batched.stream(list(range(300)), GenerationConfig(max_new_tokens=4)))
    # the engine still answers after the error
    assert batched.generate(_prompts(batched)[0], GenerationConfig(max_new_tokens=3, temperature=0)).completion_tokens


def test_scoring_beside_batched_generation(alone, batched):
    """Log-likelihood scoring (sequence 0) may run while the runner decodes; both stay correct."""
    prompts = _prompts(alone)[:3]
    gen = GenerationConfig(max_new_tokens=24, temperature=0)
    want = [alone.generate(p, gen).text for p in prompts]
    ctx = prompts[0]
    opts = {k: alone.tokenizer.encode(k, add_special_tokens=False) for k in ("是", "否", "不确定")}
    ref = alone.score_continuations(ctx, opts)
    scores = []
    t = threading.Thread(target=lambda: scores.extend(batched.score_continuations(ctx, opts) for _ in range(5)))
    t.start()
    got = _concurrently(batched, prompts, [gen] * 3)
    t.join(60)
    assert [_text(g) for g in got] == want
    for s in scores:
        assert s.keys() == ref.keys() and all(abs(s[k] - ref[k]) < 1e-4 for k in ref)


def test_serve_runs_requests_together(gguf, qwen_tokenizer, alone):
    """ming serve over the batching engine: concurrent streaming clients get their own, unmixed answers,
    identical to the answers given one at a time."""
    eng = _load(gguf, qwen_tokenizer, max_batch=4)
    questions = QUESTIONS[:4]
    gen = GenerationConfig(max_new_tokens=16, temperature=0)
    try:
        with LiveServer(eng, max_queue=8, generation=gen) as srv:
            assert srv.scheduler.workers == 4 and not srv.scheduler.serialise

            def ask(q: str) -> str:
                body = {"messages": [{"role": "user", "content": q}], "stream": True, "max_tokens": 16,
                        "temperature": 0}
                text = ""
                with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) as r:
                    assert r.status_code == 200
                    for line in r.iter_lines():
                        if line.startswith("data: {"):
                            import json

                            for ch in json.loads(line[6:])["choices"]:
                                text += ch.get("delta", {}).get("content") or ""
                return text

            one_by_one = [ask(q) for q in questions]
            out: list = [None] * 4
            threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, ask(questions[i]))) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert out == one_by_one and len(set(out)) > 1
            health = httpx.get(srv.url + "/health").json()
            assert health["batch"]["kv_cells"] == 256 and health["batch"]["running"] == 0
    finally:
        eng.close()


@pytest.fixture(scope="module")
def embedded_0_5b():
    from ming import models

    try:
        ref = models.resolve("0.5b", None)
    except MingError as exc:
        pytest.skip(f"the embedded 0.5B is not prepared: {exc}")
    return ref


def test_embedded_model_concurrent_greedy_equal_alone(embedded_0_5b):
    """The quantized embedded model: batched steps give the tokens of one-at-a-time runs."""
    alone = llamacpp.load(embedded_0_5b, threads=1, context_length=512, use_extra_bufts=False)
    batched = llamacpp.load(embedded_0_5b, threads=1, context_length=512, max_batch=4)
    try:
        prompts = _prompts(alone, QUESTIONS[:4])
        gen = GenerationConfig(max_new_tokens=24, temperature=0)
        want = [alone.generate(p, gen).text for p in prompts]
        got = _concurrently(batched, prompts, [gen] * 4, stagger=0.05)
        assert [_text(g) for g in got] == want
    finally:
        alone.close()
        batched.close()


def _eval_outputs(tmp_path, model: str, bs: int, extra=()) -> dict:
    import json
    from pathlib import Path

    from ming.cli.main import main

    mcq = str(Path(__file__).parent / "fixtures" / "eval" / "mcq_small.jsonl")
    out = tmp_path / f"b{bs}"
    rc = main(["eval", "mcq", "--data", mcq, "--model-path", model, "--backend", "llamacpp", "--context-length", "512",
               "--max-new-tokens", "12", "--batch-size", str(bs), "--output", str(out), "--no-progress", "--safety",
               "off", *extra])
    assert rc == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["id"]: (r["output"], r["completion_tokens"]) for r in rows}


def test_local_eval_batches_items(gguf, tmp_path, capsys):
    """`ming eval --batch-size 4` on a local GGUF answers the items together in one batching engine."""
    got = _eval_outputs(tmp_path, str(gguf), 4, ["--threads", "1"])
    assert len(got) == 6 and all(n > 0 for _, n in got.values())
    assert "4 sequences batched" in capsys.readouterr().err


def test_local_eval_batch_size_same_answers_embedded(embedded_0_5b, tmp_path):
    """On the embedded 0.5B, `--batch-size 4` gives the answers of `--batch-size 1`."""
    one = _eval_outputs(tmp_path, "0.5b", 1, ["--threads", "2"])
    four = _eval_outputs(tmp_path, "0.5b", 4, ["--threads", "2"])
    assert len(one) == 6 and four == one


def test_serve_disconnect_frees_the_slot_and_queue_limit_holds(gguf, qwen_tokenizer):
    """A client that goes away mid-stream leaves the batch at the next step; beyond --max-batch running and
    --max-queue waiting the server answers 429 with Retry-After and stays up."""
    eng = _load(gguf, qwen_tokenizer, max_batch=2)
    long = GenerationConfig(max_new_tokens=200, temperature=0.8, seed=1)
    body = {"messages": [{"role": "user", "content": "头痛"}], "stream": True, "max_tokens": 120, "temperature": 0.8,
            "seed": 3}
    try:
        with LiveServer(eng, max_queue=0, generation=long) as srv:
            with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if '"content":"' in line and '"content":""' not in line:
                        break  # the first real token arrived: hang up
            deadline = time.monotonic() + 20
            while (eng.batch_stats()["running"] or srv.scheduler.stats()["running"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert eng.batch_stats()["running"] == 0 and srv.scheduler.stats()["running"] == 0

            # two running fill --max-batch 2; with --max-queue 0 a third is refused at once
            streams = [httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) for _ in range(2)]
            for s in streams:
                assert s.__enter__().status_code == 200
            try:
                deadline = time.monotonic() + 20
                while srv.scheduler.stats()["running"] < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                third = httpx.post(srv.url + "/v1/chat/completions", json={**body, "stream": False}, timeout=30)
                assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
            finally:
                for s in streams:
                    s.__exit__(None, None, None)
            assert httpx.get(srv.url + "/health").status_code == 200
    finally:
        eng.close()


def test_serve_n_choices_decoded_together(gguf, qwen_tokenizer):
    """`n` > 1 on a batching server: the choices run in the same steps (far fewer steps than tokens), and
    choice i is the answer seed + i gives alone; a streamed request interleaves choices by index."""
    eng = _load(gguf, qwen_tokenizer, max_batch=4)
    q = [{"role": "user", "content": QUESTIONS[1]}]
    try:
        with LiveServer(eng, max_queue=8, generation=GenerationConfig(max_new_tokens=24)) as srv:
            url = srv.url + "/v1/chat/completions"
            body = {"messages": q, "max_tokens": 24, "temperature": 1.0, "seed": 5}
            alone = [httpx.post(url, json={**body, "seed": 5 + i}, timeout=60).json()["choices"][0]["message"]
                     ["content"] for i in range(3)]
            before = eng.batch_stats()["steps"]
            d = httpx.post(url, json={**body, "n": 3}, timeout=60).json()
            steps = eng.batch_stats()["steps"] - before
            assert [c["index"] for c in d["choices"]] == [0, 1, 2]
            assert [c["message"]["content"] for c in d["choices"]] == alone
            assert steps < d["usage"]["completion_tokens"] - 3  # together, not one choice after another
            assert not any("one after another" in w for w in d["ming"]["warnings"])
            with httpx.stream("POST", url, json={**body, "n": 3, "stream": True}, timeout=60) as r:
                import json

                idx = [json.loads(line[6:])["choices"][0]["index"] for line in r.iter_lines()
                       if line.startswith("data: {") and '"choices":[{' in line]
            assert set(idx) == {0, 1, 2}
            assert eng.batch_stats()["running"] == 0
    finally:
        eng.close()
