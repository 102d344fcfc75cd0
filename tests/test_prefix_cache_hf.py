"""KV reuse across turns in the transformers backend: greedy answers are the same with and without
the cache, through new turns, /undo, `new chat` and history truncation, and later turns really do
reuse the cache (cached_tokens)."""

from __future__ import annotations

import pytest

from ming.engine import GenerationConfig
from ming.respond import Pipeline
from ming.session import Session

SYSTEM = "你是一名经验丰富的医生，请进行问诊。"
SCRIPT = [
    ("ask", "我最近总是头痛，怎么办？"),
    ("ask", "头痛已经三天了，晚上更严重。"),
    ("ask", "需要做什么检查？"),
    ("undo", None),
    ("ask", "可以吃布洛芬吗？"),
    ("ask", "还有别的办法吗？"),  # long enough history: the oldest exchanges are dropped (truncation)
    ("reset", None),
    ("ask", "我发烧了，三十八度五。"),
    ("ask", "还咳嗽，有黄痰。"),
]


def run_script(engine, gen, script=SCRIPT, system=SYSTEM):
    """Play a consultation; return one dict per answer: action before it, answer, usage, truncation."""
    s = Session(Pipeline(engine, mode=None, system=system), gen)
    engine.reset_cache()
    out, before = [], "start"
    for action, arg in script:
        if action == "undo":
            assert s.undo()
            before = "undo"
        elif action == "reset":
            s.reset()
            before = "reset"
        else:
            done = [ev for ev in s.ask(arg) if ev.kind == "done"][0]
            r = done.result
            out.append({"before": before, "text": r.model_text, "prompt": r.prompt_tokens,
                        "cached": r.cached_tokens, "dropped": s.last_dropped})
            before = "ask"
    return out


def check_usage(a, b):
    """The reuse run `a` reused what it could and nothing it should not; `b` (no reuse) reused nothing."""
    assert [x["prompt"] for x in a] == [x["prompt"] for x in b]  # identical prompts
    assert [x["dropped"] for x in a] == [x["dropped"] for x in b]
    assert all(x["cached"] == 0 for x in b)
    assert any(x["dropped"] for x in a), "the script did not trigger history truncation; shrink the context"
    for x in a:
        assert x["cached"] < x["prompt"]
        if x["before"] in ("start", "reset"):
            assert x["cached"] == 0  # first turn / new chat: nothing to reuse
        elif x["dropped"]:
            assert 0 < x["cached"] < x["prompt"] // 2  # only the system prompt survives truncation
        else:
            assert x["cached"] > 0  # a later turn, or after /undo: the shared history is reused


def check_reuse(with_cache, without, gen):
    a = run_script(with_cache, gen)
    b = run_script(without, gen)
    assert [x["text"] for x in a] == [x["text"] for x in b]  # same greedy answers
    check_usage(a, b)
    return a


@pytest.fixture(scope="module")
def tiny_pair(tiny_qwen_dir):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    def make(reuse):
        return create_engine(ModelOptions(model_path=str(tiny_qwen_dir), backend="hf", device="cpu",
                                          prefix_cache=reuse, context_length=170))
    return make(True), make(False)


def test_hf_reuse_equal_tiny(tiny_pair):
    gen = GenerationConfig(max_new_tokens=24, temperature=0)
    a = check_reuse(*tiny_pair, gen)
    assert any(x["text"] for x in a)


def test_hf_reuse_after_cancel_and_edit(tiny_pair):
    """A cancelled answer and an edited earlier message must not leak stale cache entries."""
    import threading

    eng, ref = tiny_pair
    gen = GenerationConfig(max_new_tokens=12, temperature=0)
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "头痛怎么办？"}]
    ev = threading.Event()
    for i, ch in enumerate(eng.chat_stream(msgs, gen, ev)):
        ev.set()
    edited = [{"role": "system", "content": SYSTEM + "回答要简短。"}, {"role": "user", "content": "头痛怎么办？"}]
    assert eng.chat(edited, gen).text == ref.chat(edited, gen).text


@pytest.mark.slow
def test_hf_reuse_equal_embedded():
    """The embedded model with transformers (fp32): same greedy answers with and without reuse."""
    from ming.config import ModelOptions
    from ming.engine import create_engine

    gen = GenerationConfig(max_new_tokens=16, temperature=0)
    from test_prefix_cache_llamacpp import fit_window

    with_cache = create_engine(ModelOptions(backend="hf", device="cpu"))
    without = create_engine(ModelOptions(backend="hf", device="cpu", prefix_cache=False))
    fit_window((with_cache, without), gen)
    check_reuse(with_cache, without, gen)
