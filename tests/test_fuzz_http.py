"""Fuzz of the HTTP API (seeded, bounded): random JSON shapes, types, sizes, Unicode and encodings against a
real server on 127.0.0.1. Every answer is a 2xx or a 4xx in OpenAI's error format, never a 5xx, and the
server answers normally afterwards. A failure names its seed and case number, so it replays."""

from __future__ import annotations

import json
import random

import httpx
import pytest
from fixtures import fuzz
from fixtures.serve.live import LiveServer

URL = "/v1/chat/completions"
CASES = 150
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; "
                 "charset=gbk", "multipart/form-data; boundary=x"]


@pytest.fixture(scope="module")
def live(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, max_queue=64) as srv:
        yield srv


def check(r: httpx.Response, case: str) -> None:
    assert r.status_code < 500, f"{case}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], case
        return
    if r.request.url.path != URL:
        return
    if r.headers["content-type"].startswith("text/event-stream"):
        events = [line for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]", case
        for e in events[:-1]:
            assert "error" not in json.loads(e[6:]), f"{case}: {e[:300]}"
    else:
        body = r.json()
        assert body["object"] == "chat.completion" and body["choices"], case


@pytest.mark.parametrize("seed", [20, 21])
def test_fuzz_chat_completions(live, seed):
    rng = random.Random(seed)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        for i in range(CASES):
            case = f"seed {seed} case {i}"
            body = fuzz.request(rng) if rng.random() < 0.85 else fuzz.value(rng)
            raw = fuzz.encode(rng, body)
            headers = {"content-type": rng.choice(CONTENT_TYPES)}
            method = rng.choice(["POST"] * 9 + ["GET", "PUT"])
            path = URL if rng.random() < 0.95 else rng.choice(["/v1/models", "/v1/models/x", "/health", "/%ff",
                                                               "/v1/chat/completions/", "/static/../x"])
            content = raw if rng.random() < 0.8 else iter([raw[j:j + 7] for j in range(0, len(raw), 7)])
            if method == "GET":
                content = None
            check(client.request(method, path, content=content, headers=headers), case)
    ok = httpx.post(live.url + URL, json={"messages": [{"role": "user", "content": "头痛"}], "max_tokens": 2},
                    timeout=30)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["role"] == "assistant"
    assert live.scheduler.wait_idle(15)
