"""The official `openai` Python client, unchanged, against `ming serve`."""

from __future__ import annotations

import pytest
from fixtures.serve.live import LiveServer

openai = pytest.importorskip("openai")

Q = [{"role": "user", "content": "我最近总是头痛，怎么办？"}]


@pytest.fixture(scope="module")
def client(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, api_key="k-123") as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="k-123", max_retries=0), srv


def test_models_and_completion(client):
    c, _ = client
    models = c.models.list()
    assert len(models.data) == 1
    r = c.chat.completions.create(model=models.data[0].id, messages=Q, max_tokens=6, temperature=0, seed=1)
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 6 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # ming's extension fields survive in the client's objects
    extra = r.model_extra or {}
    assert "120" in extra["ming"]["disclaimer"] and extra["ming"]["mode"] == "qa"


def test_streaming_and_extensions(client):
    c, _ = client
    full = c.chat.completions.create(model="m", messages=Q, max_tokens=8, temperature=0,
                                     extra_body={"mode": "consult"})
    stream = c.chat.completions.create(model="m", messages=Q, max_tokens=8, temperature=0, stream=True,
                                       stream_options={"include_usage": True}, extra_body={"mode": "consult"})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert text == full.choices[0].message.content and finish == full.choices[0].finish_reason
    assert usage.completion_tokens == full.usage.completion_tokens
    assert (full.model_extra or {})["ming"]["system_prompt"] == "ming:consult"


def test_errors_map_to_the_clients_exceptions(client):
    c, srv = client
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "痛" * 2000}])
    assert e.value.code == "context_length_exceeded" and "512" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="m", messages=Q, max_tokens=10**7)
    bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="m", messages=Q)
