"""The model triage step (ming.safety.model_triage) on the llama.cpp engine: in `ming serve --triage-model` per
request, beside the batch or one request at a time, and in `ming chat --triage-model` on a scoring sequence of
its own, so the conversation's KV cache survives it.

A real tiny Qwen2 GGUF (random weights: it cannot judge emergencies, so only the mechanics are exercised:
threshold 0.0 always escalates, 1.0 never does) with real llama.cpp and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from ming.engine import GenerationConfig
from ming.errors import MingError

pytest.importorskip("llama_cpp")

from fixtures.serve.live import LiveServer  # noqa: E402
from test_batching import _load as load_tiny  # noqa: E402  (n_batch 63: a lone engine's kernels = a batching one's)
from test_batching import gguf  # noqa: E402, F401  (the tiny q8_0 GGUF fixture)

from ming.respond import Pipeline  # noqa: E402
from ming.safety import model_triage  # noqa: E402
from ming.safety.model_triage import ModelTriage  # noqa: E402
from ming.safety.policy import MODEL_RULE_ID  # noqa: E402
from ming.session import Session  # noqa: E402
from ming.stages import build, stage_options  # noqa: E402

URL = "/v1/chat/completions"
ROUTINE = ["最近睡眠不太好，白天有点累", "晚上吃点什么有助于睡眠？", "膝盖爬楼梯时有点酸", "感冒后一直流鼻涕怎么办？"]
GEN = GenerationConfig(max_new_tokens=12, temperature=0)

CTX = 512  # the judge's prompt and a three-turn chat fit


def _load(path, tok, **kw):
    return load_tiny(path, tok, **{"context_length": CTX, **kw})


@pytest.fixture(scope="module")
def alone(gguf, qwen_tokenizer):
    eng = _load(gguf, qwen_tokenizer)
    yield eng
    eng.close()


def _p_yes(engine, text: str) -> float:
    return ModelTriage(engine).assess([text]).p_yes


# -- ming serve --triage-model ---------------------------------------------------------------------------------
def _ask(srv, text: str, stream: bool = False) -> tuple[str, dict]:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 12, "temperature": 0, "stream": stream}
    if not stream:
        r = httpx.post(srv.url + URL, json=body, timeout=120)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["choices"][0]["ming_safety"] == d["ming_safety"]
        return d["choices"][0]["message"]["content"], d["ming_safety"]
    text, safety = "", None
    with httpx.stream("POST", srv.url + URL, json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                ev = json.loads(line[6:])
                for ch in ev["choices"]:
                    text += ch.get("delta", {}).get("content") or ""
                safety = ev.get("ming_safety") or safety
    return text, safety


@pytest.fixture(scope="module", params=[1, 2], ids=["one-at-a-time", "batched"])
def served(request, gguf, qwen_tokenizer):
    """The engine `ming serve --triage-model` loads: --max-batch 1 (a scoring sequence of its own, the judge holds
    the engine lock) or a batching engine (the judge scores on sequence 0 beside the batch)."""
    eng = _load(gguf, qwen_tokenizer, max_batch=request.param, prefill_chunk=8, scoring_sequence=True,
                context_length=256)  # < 512 cells: a lone query and a batched one use the same attention kernel
    yield eng
    eng.close()


def test_serve_model_step_escalates_at_threshold_0_and_reports_it(served, alone):
    with LiveServer(served, safety="on", triage_model=True, triage_threshold=0.0, generation=GEN) as srv:
        text, s = _ask(srv, ROUTINE[0])
        streamed, s2 = _ask(srv, ROUTINE[0], stream=True)
    m = s["triage_model"]
    assert s["action"] == "escalate" and s["emergency"] is True and s["triage_step"] == "model"
    assert m["fired"] is True and m["threshold"] == 0.0 and m["seconds"] > 0 and m["prompt_tokens"] > 0
    assert m["p_yes"] == pytest.approx(_p_yes(alone, ROUTINE[0]), abs=1e-3)  # the same judge as chat's
    assert s["triggered"][0]["rule_id"] == MODEL_RULE_ID
    assert text.startswith(s["prefix"]) and "120" in text and MODEL_RULE_ID in text
    assert s2["triage_step"] == "model" and s2["triage_model"]["p_yes"] == pytest.approx(m["p_yes"], abs=1e-3)
    assert streamed.startswith(s["prefix"])


def test_serve_model_step_beside_other_requests_changes_no_answer(served, alone):
    """Threshold 1.0 never escalates: every request is judged (its own p) while others generate, and each gets
    exactly the answer it gets without the model step."""
    with LiveServer(served, safety="on", generation=GEN, triage_ngram=False) as srv:
        without = [_ask(srv, q) for q in ROUTINE]
    assert all("triage_model" not in s and s["triage_step"] == "" for _, s in without)
    with LiveServer(served, safety="on", triage_model=True, triage_threshold=1.0, generation=GEN, max_queue=8,
                    triage_ngram=False) as srv:
        out: list = [None] * len(ROUTINE)
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, _ask(srv, ROUTINE[i], stream=i % 2 == 1)))
                   for i in range(len(ROUTINE))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    assert all(o is not None for o in out), "a request never finished"
    assert [t for t, _ in out] == [t for t, _ in without]
    for q, (_, s) in zip(ROUTINE, out):
        assert s["action"] == "answer" and s["triage_step"] == "" and s["triage_model"]["fired"] is False
        assert s["triage_model"]["p_yes"] == pytest.approx(_p_yes(alone, q), abs=1e-3)


def test_serve_settings_and_flags():
    from ming.cli.main import build_parser
    from ming.serve.settings import ServeSettings, from_args

    assert ServeSettings().triage_model is False
    assert ServeSettings().triage_threshold == model_triage.DEFAULT_THRESHOLD
    argv = ["serve", "--triage-model", "--triage-threshold", "0.6"]
    s = from_args(build_parser(argv).parse_args(argv))
    assert s.triage_model is True and s.triage_threshold == 0.6
    with pytest.raises(MingError, match="triage-threshold is a probability"):
        ServeSettings(triage_threshold=1.5).validate()


# -- ming chat --triage-model: the conversation's cache stays ----------------------------------------------------
def _chat(engine, threshold: float | None, questions) -> list:
    engine.reset_cache()
    session = Session(Pipeline(engine, build(stage_options("on", triage_model=threshold))), GEN)
    results = []
    for q in questions:
        results += [ev.result for ev in session.ask(q) if ev.kind == "done"]
    return results


def test_chat_model_step_keeps_the_conversation_cache(gguf, qwen_tokenizer, alone):
    """With a scoring sequence the next turn's prompt comes from the prefix cache (the usage's cached tokens
    cover the whole previous prompt); on a one-sequence engine the judge's prompt evicted it."""
    chat = _load(gguf, qwen_tokenizer, scoring_sequence=True)
    try:
        ref = _chat(alone, None, ROUTINE[:3])  # no model step
        kept = _chat(chat, 1.0, ROUTINE[:3])
        evicted = _chat(alone, 1.0, ROUTINE[:3])
    finally:
        chat.close()
    assert [r.model_text for r in kept] == [r.model_text for r in ref] == [r.model_text for r in evicted]
    assert all(r.meta["safety"]["triage_model"]["fired"] is False for r in kept + evicted)
    for prev, nxt in zip(kept, kept[1:]):
        assert nxt.cached_tokens >= prev.prompt_tokens  # the previous turn's prompt is all reused
    for a, b in zip(ref[1:], kept[1:]):
        assert b.cached_tokens == a.cached_tokens  # as much as without the model step
    for prev, nxt in zip(evicted, evicted[1:]):
        assert nxt.cached_tokens < prev.prompt_tokens // 2  # re-encoded: the judge's prompt held the cache
    assert [r.meta["safety"]["triage_model"]["p_yes"] for r in kept] == pytest.approx(
        [r.meta["safety"]["triage_model"]["p_yes"] for r in evicted], abs=1e-3)


def test_scoring_sequence_is_its_own_cache(gguf):
    """`ming chat --triage-model`'s engine (create_engine(..., scoring_sequence=True)): scoring reuses its own prefix
    (the judge's fixed instruction), and a new chat clears only the conversation's sequence."""
    from ming.config import ModelOptions
    from ming.engine import create_engine

    eng = create_engine(ModelOptions(model_path=str(gguf), backend="llamacpp", threads=1, context_length=CTX),
                        scoring_sequence=True)
    try:
        assert eng.kv_cells == 512 and not eng.kv_unified
        judge = ModelTriage(eng)
        ids = judge.render(ROUTINE[0])
        first = judge.score(ROUTINE[0])
        eng.generate(eng.render([{"role": "user", "content": ROUTINE[1]}]).ids, GEN)
        held = list(eng._ids)
        again = judge.score(ROUTINE[0])  # from the scoring sequence's cache: only the last token is fed again
        # (the default repacked kernels sum a one-token step differently from a whole prompt's: last bits differ)
        assert again.p_yes == pytest.approx(first.p_yes, abs=5e-3)
        assert eng._ids == held and eng._scorer._ids[:len(ids)] == ids
        eng.reset_cache()
        assert eng._ids == [] and eng._scorer._ids[:len(ids)] == ids
        assert judge.score(ROUTINE[0]).p_yes == pytest.approx(again.p_yes, abs=1e-6)
    finally:
        eng.close()
