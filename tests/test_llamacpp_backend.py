"""The llama.cpp backend: loads without the AMX crash, sees the same prompt ids as transformers,
samples with the same rules, stops, cancels, streams UTF-8 safely, scores log-likelihoods."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

pytest.importorskip("llama_cpp")

from ming import envs  # noqa: E402
from ming.engine import GenerationConfig  # noqa: E402

MSGS = [{"role": "system", "content": "你是一名医生。"}, {"role": "user", "content": "我最近总是头痛，怎么办？"}]
GREEDY = GenerationConfig(max_new_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def emb():
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(model_path="0.5b", threads=2))  # auto: llama.cpp for the embedded GGUF on CPU


def test_load_and_decode_in_subprocess_no_illegal_instruction():
    """The default llama.cpp build dies with SIGILL (AMX) on the first decode on this kind of Xeon. Run in a
    child process so a crash fails this test instead of killing pytest."""
    code = (
        "import json\n"
        "from ming.config import ModelOptions\n"
        "from ming.engine import create_engine, GenerationConfig\n"
        "e = create_engine(ModelOptions())\n"
        f"c = e.chat({MSGS!r}, GenerationConfig(max_new_tokens=8, temperature=0))\n"
        "print(json.dumps({'backend': e.backend, 'text': c.text, 'n': c.completion_tokens, "
        "'extra_bufts': e.use_extra_bufts, 'threads': e.threads}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"exit {p.returncode} (-4 = SIGILL, the AMX crash):\n{p.stderr[-2000:]}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["backend"] == "llamacpp"
    assert out["n"] == 8 and out["text"]
    assert out["threads"] >= 1


def test_amx_path_cannot_be_used(emb):
    from ming.engine.llamacpp import build_has_amx, system_info

    assert "REPACK" in system_info() or "AVX" in system_info()
    if not build_has_amx():
        assert "AMX" not in system_info()
    elif not envs.llamacpp_amx():
        assert emb.use_extra_bufts is False  # a build with AMX code is loaded without the AMX buffer type


def test_amx_buffers_only_when_asked(monkeypatch):
    from ming.engine import llamacpp

    monkeypatch.setattr(llamacpp, "build_has_amx", lambda: True)
    monkeypatch.delenv("MING_LLAMACPP_AMX", raising=False)
    assert llamacpp.default_extra_bufts(1, True) is False  # an AMX build: no AMX buffer type by default
    monkeypatch.setenv("MING_LLAMACPP_AMX", "1")
    assert llamacpp.default_extra_bufts(1, True) is True
    assert llamacpp.default_extra_bufts(8, False) is True
    assert llamacpp.default_extra_bufts(8, True) is False  # batch-invariant batching: never repacked
    monkeypatch.setattr(llamacpp, "build_has_amx", lambda: False)
    monkeypatch.delenv("MING_LLAMACPP_AMX")
    assert llamacpp.default_extra_bufts(1, True) is True


def test_prompt_ids_identical_across_backends(emb, qwen_tokenizer):
    """llama.cpp gets exactly the ids ming's template renders for transformers, and they are the ids
    llama.cpp's own tokenizer makes of that text."""
    import llama_cpp as L

    from ming.templates import Template

    msgs = MSGS + [{"role": "assistant", "content": "请问头痛持续多久了？有没有发热、呕吐？"},
                   {"role": "user", "content": "三天了，没有发热。血压 150/95 mmHg。"}]
    r_llama = emb.render(msgs)
    r_hf = Template("qwen", qwen_tokenizer).render(msgs, add_generation_prompt=True)
    assert r_llama.ids == r_hf.ids and r_llama.text == r_hf.text
    raw = r_llama.text.encode("utf-8")
    buf = (L.llama_token * (len(raw) + 8))()
    n = L.llama_tokenize(emb._vocab, raw, len(raw), buf, len(buf), False, True)
    assert list(buf[:n]) == r_llama.ids


def test_prompt_ids_identical_tiny_converted(tiny_f32_gguf):
    """A checkpoint and its converted GGUF render byte-identical prompts (tokenizer round trip)."""
    from ming.config import ModelOptions
    from ming.engine import create_engine

    hf_dir, gguf = tiny_f32_gguf
    a = create_engine(ModelOptions(model_path=str(gguf), backend="llamacpp", threads=1))
    b = create_engine(ModelOptions(model_path=str(hf_dir), backend="hf", device="cpu"))
    assert a.backend == "llamacpp" and b.backend == "hf"
    assert a.render(MSGS).ids == b.render(MSGS).ids
    assert a.template.name == b.template.name == "qwen"
    assert a.stop_ids == b.stop_ids


@pytest.fixture(scope="module")
def tiny_f32_gguf(tmp_path_factory, qwen_tokenizer):
    from test_prefix_cache_llamacpp import tiny_gguf

    return tiny_gguf(tmp_path_factory, qwen_tokenizer, "f32")


def test_greedy_stream_usage_and_utf8(emb):
    chunks = list(emb.chat_stream(MSGS, GREEDY))
    last = chunks[-1]
    assert last.finish_reason == "length" and last.completion_tokens == 12
    assert last.prompt_tokens == len(emb.render(MSGS).ids)
    text = "".join(c.text for c in chunks)
    assert all("\ufffd" not in c.text for c in chunks)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)  # Chinese came through whole
    assert emb.chat(MSGS, GREEDY).text == text  # greedy is deterministic (and the cache does not change it)


def test_seed_top_k_and_penalty(emb):
    s = GenerationConfig(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=7)
    a, b = emb.chat(MSGS, s).text, emb.chat(MSGS, s).text
    assert a == b
    outs = {emb.chat(MSGS, s.replace(seed=k)).text for k in range(4)}
    assert len(outs) > 1
    # top_k=1 sampling is greedy whatever the temperature
    assert emb.chat(MSGS, s.replace(top_k=1, temperature=1.5)).text == emb.chat(MSGS, GREEDY.replace(max_new_tokens=10)).text


def test_pick_rules_match_transformers():
    """Repetition penalty / temperature / top-k / top-p (ming.engine.sampling, used by both CPU backends) give
    the same distribution as transformers' processors."""
    import numpy as np
    import torch
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from ming.engine import sampling

    rng = np.random.default_rng(0)
    logits = rng.normal(size=50).astype(np.float32) * 3
    history = [1, 4, 4, 9]
    gen = GenerationConfig(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.3)
    x = torch.tensor(logits)[None]
    ids = torch.tensor([history])
    for proc in (RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7), TopKLogitsWarper(20),
                 TopPLogitsWarper(0.8)):
        x = proc(ids, x)
    want = torch.softmax(x, -1)[0].numpy()
    counts = np.zeros(50)
    r = np.random.default_rng(1)
    for _ in range(4000):
        counts[sampling.pick(logits, gen, history, r)] += 1
    assert set(np.nonzero(counts)[0]) <= set(np.nonzero(want > 0)[0])
    assert np.abs(counts / counts.sum() - want).max() < 0.03
    # greedy with a repetition penalty: the penalised best token loses
    lg = np.array([0.0, 5.0, 4.5], dtype=np.float32)
    assert sampling.pick(lg, GenerationConfig(temperature=0, repetition_penalty=1.5), [1], None) == 2


def test_stop_string_and_cancel(emb):
    text = emb.chat(MSGS, GREEDY.replace(max_new_tokens=40)).text
    assert "，" in text, text
    c = emb.chat(MSGS, GREEDY.replace(max_new_tokens=40, stop=("，",)))
    assert c.finish_reason == "stop" and c.text == text[:text.index("，")]
    ev = threading.Event()
    ev.set()
    last = list(emb.chat_stream(MSGS, GREEDY, ev))[-1]
    assert last.finish_reason == "cancelled" and last.completion_tokens == 0
    ev2 = threading.Event()
    seen = []
    for ch in emb.chat_stream(MSGS, GREEDY.replace(max_new_tokens=40), ev2):
        seen.append(ch)
        if ch.text:
            ev2.set()
    assert seen[-1].finish_reason == "cancelled" and seen[-1].completion_tokens < 40


def test_stops_on_end_of_turn_token(emb):
    c = emb.chat([{"role": "user", "content": "只回答一个字：好"}], GenerationConfig(max_new_tokens=64, temperature=0))
    assert c.finish_reason == "stop" and "<|im_end|>" not in c.text


def test_errors(emb):
    from ming.errors import MingError

    with pytest.raises(MingError, match="beam"):
        emb.generate([1, 2, 3], GenerationConfig(num_beams=2))
    with pytest.raises(MingError, match="context window"):
        emb.generate([100] * (emb.context_length + 1), GREEDY)


def test_threads_are_passed(tiny_f32_gguf):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    e = create_engine(ModelOptions(model_path=str(tiny_f32_gguf[1]), threads=1))
    assert e.backend == "llamacpp" and e.threads == 1
    assert e.L.llama_n_threads(e._ctx) == 1


def test_loglikelihood_matches_transformers(tiny_f32_gguf, emb):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    hf_dir, gguf = tiny_f32_gguf
    a = create_engine(ModelOptions(model_path=str(gguf), threads=1))
    b = create_engine(ModelOptions(model_path=str(hf_dir), backend="hf", device="cpu"))
    ctx = a.render(MSGS).ids
    cont = a.tokenizer.encode("头痛的原因很多，请问持续多久了？", add_special_tokens=False)
    la, lb = a.loglikelihood(ctx, cont), b.loglikelihood(ctx, cont)
    assert la == pytest.approx(lb, rel=1e-3)
    assert a.loglikelihood(ctx, cont[:1]) == pytest.approx(b.loglikelihood(ctx, cont[:1]), rel=1e-3)
    # the embedded model prefers a sensible answer
    ctx = emb.tokenizer.encode("高血压患者应该", add_special_tokens=False)
    good = emb.loglikelihood(ctx, emb.tokenizer.encode("低盐饮食", add_special_tokens=False))
    bad = emb.loglikelihood(ctx, emb.tokenizer.encode("多吃咸菜", add_special_tokens=False))
    assert good > bad


def test_select_auto_and_beam_fallback(capsys, tiny_f32_gguf):
    from ming import models
    from ming.config import ModelOptions
    from ming.engine import select

    gguf = models.resolve(str(tiny_f32_gguf[1]))
    hf = models.resolve(str(tiny_f32_gguf[0]))
    assert select.choose(ModelOptions(device="cpu"), gguf) == "llamacpp"
    assert select.choose(ModelOptions(device="cpu"), gguf) == "llamacpp"
    assert select.choose(ModelOptions(device="cpu"), hf) == "hf"
    assert capsys.readouterr().err == ""
    assert select.choose(ModelOptions(device="cpu"), gguf, need_beam=True) == "hf"
    assert select.choose(ModelOptions(backend="llamacpp"), gguf, need_beam=True) == "hf"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("beam search" in line for line in err)
