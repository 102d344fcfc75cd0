"""KV reuse across turns in the llama.cpp backend, through new turns, /undo, `new chat` and history
truncation.

On the tiny converted f32 GGUF the answers with and without reuse are identical. On the embedded
quantized model llama.cpp's logits depend slightly on how tokens were batched (a token decoded on
its own vs inside a prompt batch: measured max |dlogit| ~0.3 on logits of ~30), so greedy answers
can differ at near-ties late in an answer; the tests check usage exactly, answers nearly, and that
the first-token logits of every turn agree within that tolerance."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from test_prefix_cache_hf import SCRIPT, SYSTEM, check_reuse, check_usage, run_script  # noqa: E402

from ming.engine import GenerationConfig  # noqa: E402


def tiny_qwen2(tmp_path_factory, qwen_tokenizer, hidden=64, intermediate=128):
    """A tiny random Qwen2 checkpoint folder `hidden` wide (256 or more for llama.cpp's k-quants to apply)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(qwen_tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=0.3,
                      eos_token_id=qwen_tokenizer.convert_tokens_to_ids("<|im_end|>"))
    d = tmp_path_factory.mktemp(f"tiny-qwen2-{hidden}")
    Qwen2ForCausalLM(cfg).save_pretrained(d)
    qwen_tokenizer.save_pretrained(d)
    return d


def tiny_gguf(tmp_path_factory, qwen_tokenizer, outtype="f32"):
    from ming.models.convert import convert

    d = tiny_qwen2(tmp_path_factory, qwen_tokenizer)
    out = d / f"tiny-{outtype}.gguf"
    convert(str(d), out, outtype)
    return d, out


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory, qwen_tokenizer):
    return tiny_gguf(tmp_path_factory, qwen_tokenizer, "f32")


def _engine(path, reuse, ctx, threads=1):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(model_path=str(path), backend="llamacpp", threads=threads,
                                      prefix_cache=reuse, context_length=ctx))


def test_llamacpp_reuse_equal_tiny_gguf(tiny_f32):
    _, gguf = tiny_f32
    gen = GenerationConfig(max_new_tokens=24, temperature=0)
    a = check_reuse(_engine(gguf, True, 170), _engine(gguf, False, 170), gen)
    assert any(x["text"] for x in a)


@pytest.fixture(scope="module")
def embedded_pair():
    return _engine("embedded", True, 1024, threads=2), _engine("embedded", False, 1024, threads=2)


def fit_window(engines, gen):
    """Shrink the engines' window so that the script's 5th question truncates history (and none before)."""
    probe = run_script(engines[1], gen)
    prompts = [x["prompt"] for x in probe]
    assert max(prompts[:4]) < prompts[4], prompts
    for e in engines:
        e.context_length = prompts[4] - 1 + gen.max_new_tokens  # Session's budget = window - max_new_tokens


def test_llamacpp_reuse_embedded(embedded_pair):
    with_cache, without = embedded_pair
    gen = GenerationConfig(max_new_tokens=16, temperature=0)
    fit_window(embedded_pair, gen)
    a = run_script(with_cache, gen)
    b = run_script(without, gen)
    check_usage(a, b)
    # llama.cpp's batching noise may flip a near-tie late in an answer (seen: 1 of 7 answers, after
    # 16 characters); a cache bug changes answers from their start. test_llamacpp_reuse_logits_close
    # checks the numbers themselves.
    same = sum(x["text"] == y["text"] for x, y in zip(a, b))
    assert same >= len(a) - 2, [(x["text"], y["text"]) for x, y in zip(a, b)]
    assert all(x["text"][:8] == y["text"][:8] for x, y in zip(a, b))
    assert sum(x["cached"] for x in a) > sum(x["prompt"] for x in a) // 2  # most of the prompt work was saved


def test_llamacpp_reuse_logits_close(embedded_pair):
    """Turn by turn, the logits after a reused prefix match a fresh prefill within llama.cpp's batching noise,
    and a wrongly kept cache entry (e.g. after an edit of an earlier message) would show as a large gap."""
    import numpy as np

    with_cache, without = embedded_pair
    gen = GenerationConfig(max_new_tokens=16, temperature=0)
    msgs = [{"role": "system", "content": SYSTEM}]
    with_cache.reset_cache()
    for q in [a for kind, a in SCRIPT if kind == "ask"][:3]:
        msgs.append({"role": "user", "content": q})
        ids = with_cache.render(msgs).ids
        n, x = with_cache._prefill(ids)
        x = np.array(x)
        y = np.array(without._prefill(ids)[1])
        assert n > 0 or len(msgs) == 2
        assert np.abs(x - y).max() < 1.0
        top2 = np.sort(y)[-2:]
        assert x.argmax() == y.argmax() or top2[1] - top2[0] < 1.0
        answer = with_cache.generate(ids, gen).text
        msgs.append({"role": "assistant", "content": answer})
    # an edited system prompt: only the shared rendering prefix may be reused
    edited = [{"role": "system", "content": "回答要简短。" + SYSTEM}] + msgs[1:-1]
    ids = with_cache.render(edited).ids
    n, x = with_cache._prefill(ids)
    assert n < 5
    x = np.array(x)
    assert np.abs(x - np.array(without._prefill(ids)[1])).max() < 1.0
