"""The engine contract both CPU backends share (ming.engine.loop): the same greedy tokens from the same
weights, one rule for a prompt that leaves no room, and log-likelihood scoring through
`score_continuations` (one-token fast path and multi-token path agree with `loglikelihood`)."""

from __future__ import annotations

import pytest

from ming.engine import GenerationConfig
from ming.errors import MingError

MSGS = [{"role": "system", "content": "你是一名医生。"}, {"role": "user", "content": "我最近总是头痛，怎么办？"}]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, qwen_tokenizer):
    """A tiny Qwen2 checkpoint on transformers and its f32 GGUF on llama.cpp (the same weights)."""
    pytest.importorskip("llama_cpp")
    from test_prefix_cache_llamacpp import tiny_gguf

    from ming.config import ModelOptions
    from ming.engine import create_engine

    hf_dir, gguf = tiny_gguf(tmp_path_factory, qwen_tokenizer, "f32")
    hf = create_engine(ModelOptions(model_path=str(hf_dir), backend="hf", device="cpu", context_length=256))
    ll = create_engine(ModelOptions(model_path=str(gguf), backend="llamacpp", threads=1, context_length=256))
    return hf, ll


@pytest.fixture(params=["hf", "llamacpp"])
def engine(request, tiny_qwen_engine):
    """Each CPU backend on its own (the transformers one needs no llama.cpp)."""
    if request.param == "hf":
        return tiny_qwen_engine
    return request.getfixturevalue("pair")[1]


def _token_ids(engine, text: str) -> list[int]:
    return engine.tokenizer.encode(text, add_special_tokens=False)


def test_same_greedy_tokens_on_both_backends(pair):
    hf, ll = pair
    ids = hf.render(MSGS).ids
    assert ll.render(MSGS).ids == ids
    gen = GenerationConfig(max_new_tokens=24, temperature=0)
    a, b = hf.generate(ids, gen), ll.generate(ids, gen)
    assert (a.text, a.finish_reason, a.completion_tokens) == (b.text, b.finish_reason, b.completion_tokens)
    assert a.completion_tokens > 0
    # the next turn reuses each backend's cache the same way and still agrees
    turn2 = MSGS + [{"role": "assistant", "content": a.text}, {"role": "user", "content": "需要做什么检查？"}]
    ids2 = hf.render(turn2).ids
    a2, b2 = hf.generate(ids2, gen), ll.generate(ids2, gen)
    assert a2.text == b2.text and a2.cached_tokens == b2.cached_tokens > 0
    # repetition penalty goes through the one sampler on both
    pen = gen.replace(repetition_penalty=1.3)
    assert hf.generate(ids, pen).text == ll.generate(ids, pen).text


def test_no_room_is_one_error_and_max_new_is_clamped(engine):
    ids = engine.render(MSGS).ids
    window = engine.context_length
    filler = [ids[-1]] * (window - len(ids))  # a prompt that fills the window exactly
    gen = GenerationConfig(max_new_tokens=50, temperature=0, stop=())
    with pytest.raises(MingError) as err:
        engine.generate(filler + ids, gen)
    msg = str(err.value)
    assert f"{window} tokens" in msg and "max_new_tokens is 50" in msg and f"the prompt is {window} tokens" in msg
    # three tokens of room: at most three new tokens, never an error
    out = engine.generate(filler[3:] + ids, gen)
    assert out.completion_tokens <= 3
    assert out.finish_reason == "stop" or (out.finish_reason == "length" and out.completion_tokens == 3)


def test_score_continuations_paths_agree_with_loglikelihood(engine):
    ctx = engine.render(MSGS).ids + _token_ids(engine, "答案：")
    letters = {k: _token_ids(engine, k) for k in "ABCD"}
    assert all(len(v) == 1 for v in letters.values())
    fast = engine.score_continuations(ctx, letters)  # one forward pass for all four
    for k, ids in letters.items():
        assert fast[k] == pytest.approx(engine.loglikelihood(ctx, ids), abs=1e-4)
    long = {"good": _token_ids(engine, "低盐饮食，规律服药"), "bad": _token_ids(engine, "多吃咸菜"), "A": letters["A"]}
    scored = engine.score_continuations(ctx, long)
    for k, ids in long.items():
        assert scored[k] == pytest.approx(engine.loglikelihood(ctx, ids), abs=1e-4)
    assert scored["A"] == pytest.approx(fast["A"], abs=1e-4)
    # scoring leaves the cache consistent: generation afterwards equals a cold run
    gen = GenerationConfig(max_new_tokens=8, temperature=0)
    warm = engine.generate(ctx, gen).text
    engine.reset_cache()
    assert engine.generate(ctx, gen).text == warm
    with pytest.raises(MingError, match="non-empty"):
        engine.score_continuations(ctx, {"x": []})


def test_score_continuations_agree_across_backends(pair):
    hf, ll = pair
    ctx = hf.render(MSGS).ids
    conts = {"a": _token_ids(hf, "头痛的原因很多"), "b": _token_ids(hf, "请"), "c": _token_ids(hf, "多喝水")}
    a, b = hf.score_continuations(ctx, conts), ll.score_continuations(ctx, conts)
    for k in conts:
        assert a[k] == pytest.approx(b[k], rel=1e-3)
