"""The OpenAI-compatible API of `ming serve`, against a real server on 127.0.0.1 (uvicorn in a thread)
with the tiny random Qwen2 engine: shapes, parameters, SSE streaming, usage, modes, extensions."""

from __future__ import annotations

import json

import httpx
import pytest
from fixtures.serve.live import LiveServer

Q = [{"role": "user", "content": "我最近总是头痛，怎么办？"}]


@pytest.fixture(scope="module")
def live(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine) as srv:
        yield srv


def post(live, body, **kw):
    return httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60, **kw)


def sse_events(resp_text: str) -> list:
    events = []
    for block in resp_text.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_health_and_models(live):
    h = httpx.get(live.url + "/health").json()
    assert h["status"] == "ok" and h["backend"] == "hf" and "120" in h["disclaimer"]
    models = httpx.get(live.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == h["model"]
    assert models["data"][0]["ming"]["context_length"] == 512
    assert httpx.get(live.url + f"/v1/models/{h['model']}").status_code == 200
    r = httpx.get(live.url + "/v1/models/gpt-9")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_completion_shape_usage_and_disclaimer(live, tiny_qwen_engine):
    r = post(live, {"model": "anything", "messages": Q, "max_tokens": 6, "temperature": 0})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-")
    assert r.headers["x-request-id"] == d["id"]
    c = d["choices"][0]
    assert c["message"]["role"] == "assistant" and c["message"]["content"]
    assert c["finish_reason"] in ("length", "stop")
    # usage counts the real prompt: the qa system prompt + the question, rendered by the template
    from ming.prompts import system_prompt

    msgs = [{"role": "system", "content": system_prompt("qa")}] + Q
    assert d["usage"]["prompt_tokens"] == len(tiny_qwen_engine.render(msgs).ids)
    assert 1 <= d["usage"]["completion_tokens"] <= 6
    assert d["usage"]["total_tokens"] == d["usage"]["prompt_tokens"] + d["usage"]["completion_tokens"]
    if c["finish_reason"] == "length":
        assert d["usage"]["completion_tokens"] == 6
    from ming import DISCLAIMER

    assert d["ming"]["disclaimer"] == DISCLAIMER
    assert d["ming"]["mode"] == "qa" and d["ming"]["system_prompt"] == "ming:qa"
    assert d["ming_safety"] is None  # this server runs --safety off


def test_mode_selects_the_system_prompt(live):
    from ming.prompts import system_prompt

    base = {"max_tokens": 8, "temperature": 0}
    consult = post(live, {**base, "messages": Q, "mode": "consult"}).json()
    explicit = post(live, {**base, "messages": [{"role": "system", "content": system_prompt("consult")}] + Q,
                           "mode": "consult"}).json()  # the mode also runs the consultation controller
    qa = post(live, {**base, "messages": Q, "mode": "qa"}).json()
    assert consult["ming"]["system_prompt"] == "ming:consult" and explicit["ming"]["system_prompt"] == "client"
    assert consult["ming_consult"] == explicit["ming_consult"] and "ming_consult" not in qa
    assert consult["choices"][0]["message"]["content"] == explicit["choices"][0]["message"]["content"]
    assert consult["usage"]["prompt_tokens"] == explicit["usage"]["prompt_tokens"] != qa["usage"]["prompt_tokens"]
    bad = post(live, {**base, "messages": Q, "mode": "surgery"})
    assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]


def test_stream_matches_non_stream_and_ends_with_done(live):
    body = {"messages": Q, "max_tokens": 10, "temperature": 0}
    full = post(live, body).json()
    r = post(live, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {r.headers["x-request-id"]} != {full["id"]}  # one id per request, its own
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[0]["ming"]["mode"] == "qa"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == full["choices"][0]["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["completion_tokens"] == full["usage"]["completion_tokens"]
    assert usage["prompt_tokens"] == full["usage"]["prompt_tokens"] and usage["total_tokens"] == full["usage"]["total_tokens"]
    # without include_usage there is no usage chunk
    plain = sse_events(post(live, {**body, "stream": True}).text)
    assert all("usage" not in c for c in plain[:-1])


def test_seed_and_temperature(live):
    body = {"messages": Q, "max_tokens": 8, "temperature": 1.0, "top_p": 1.0}
    a = post(live, {**body, "seed": 7}).json()["choices"][0]["message"]["content"]
    b = post(live, {**body, "seed": 7}).json()["choices"][0]["message"]["content"]
    c = post(live, {**body, "seed": 8}).json()["choices"][0]["message"]["content"]
    assert a == b and a != c


def test_stop_strings_cut_the_answer(live):
    body = {"messages": Q, "max_tokens": 12, "temperature": 0}
    text = post(live, body).json()["choices"][0]["message"]["content"]
    stop = text[len(text) // 2: len(text) // 2 + 2]
    assert stop.strip()
    cut = post(live, {**body, "stop": [stop, "never-appears"]}).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    one = post(live, {**body, "stop": stop}).json()  # a single string works too
    assert one["choices"][0]["message"]["content"] == text[: text.index(stop)]


def test_n_choices_are_generated_in_turn(live):
    d = post(live, {"messages": Q, "max_tokens": 5, "temperature": 1.0, "seed": 3, "n": 2}).json()
    assert [c["index"] for c in d["choices"]] == [0, 1]
    assert d["choices"][0]["message"]["content"] != d["choices"][1]["message"]["content"]
    assert any("one after another" in w for w in d["ming"]["warnings"])
    # the second choice is the one seed+1 gives alone
    alone = post(live, {"messages": Q, "max_tokens": 5, "temperature": 1.0, "seed": 4}).json()
    assert alone["choices"][0]["message"]["content"] == d["choices"][1]["message"]["content"]
    assert d["usage"]["completion_tokens"] > alone["usage"]["completion_tokens"]
    # streamed: every chunk names its choice
    ev = sse_events(post(live, {"messages": Q, "max_tokens": 4, "n": 2, "stream": True}).text)
    assert {c["choices"][0]["index"] for c in ev[:-1] if c["choices"]} == {0, 1}
    r = post(live, {"messages": Q, "n": 9})
    assert r.status_code == 400 and "n" in r.json()["error"]["param"]


def test_unsupported_and_unknown_parameters_are_reported(live, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="ming")
    d = post(live, {"messages": Q, "max_tokens": 3, "presence_penalty": 0.5, "logprobs": True,
                    "tools": [{"type": "function", "function": {"name": "f"}}], "frobnicate": {"x": 1},
                    "user": "u1", "response_format": {"type": "text"}}).json()
    assert d["ming"]["unsupported"] == ["presence_penalty", "logprobs", "tools"]
    assert d["ming"]["ignored"] == ["frobnicate"]
    assert any("presence_penalty" in w for w in d["ming"]["warnings"])
    assert "ignored 1 unknown field(s)" in caplog.text and "frobnicate" not in caplog.text  # names may be patient text


def test_content_parts_and_developer_role(live):
    parts = [{"role": "developer", "content": "你是医生。"},
             {"role": "user", "content": [{"type": "text", "text": "头痛"}, {"type": "text", "text": "怎么办"}]}]
    d = post(live, {"messages": parts, "max_tokens": 3})
    assert d.status_code == 200 and d.json()["ming"]["system_prompt"] == "client"
    img = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    r = post(live, {"messages": img})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_content"


def test_multi_turn_history_is_stateless(live):
    """Every request carries its whole history: the same request twice gives the same answer, and
    a different history changes the prompt."""
    hist = Q + [{"role": "assistant", "content": "请问头痛多久了？"}, {"role": "user", "content": "三天了"}]
    a = post(live, {"messages": hist, "max_tokens": 6, "temperature": 0}).json()
    post(live, {"messages": Q, "max_tokens": 6, "temperature": 0})  # something else in between
    b = post(live, {"messages": hist, "max_tokens": 6, "temperature": 0}).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    assert a["usage"]["prompt_tokens"] > post(live, {"messages": Q, "max_tokens": 1}).json()["usage"]["prompt_tokens"]
