"""`ming_consult` from a real server on 127.0.0.1: the consultation controller runs on consult-mode requests
(also on a server started in qa mode), streamed and not; the ten-disease test KB (tests/fixtures/kb_tiny)."""

import json
from pathlib import Path

import httpx
import pytest
from fixtures.serve.live import LiveServer

TINY = Path(__file__).parent / "fixtures" / "kb_tiny"
FIRST = [{"role": "user", "content": "我肚子疼两天了"}]


@pytest.fixture(scope="module")
def live(tiny_qwen_engine):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MING_KB", str(TINY))
        with LiveServer(tiny_qwen_engine, safety="on", mode="qa") as srv:  # started in qa mode
            yield srv


def post(live, body):
    return httpx.post(live.url + "/v1/chat/completions", json=body, timeout=120)


def sse(live, body) -> list[dict]:
    r = post(live, {**body, "stream": True})
    assert r.status_code == 200
    return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]


def test_consult_request_gets_the_controller_and_its_reasoning(live):
    d = post(live, {"messages": FIRST, "mode": "consult", "max_tokens": 40, "temperature": 0}).json()
    c = d["ming_consult"]
    assert c["kind"] == "ask" and c["question"]["text"] and "腹痛" in c["findings"]["present"]
    assert c["candidates"] and all({"name", "prob", "supporting"} <= set(x) for x in c["candidates"])
    assert d["choices"][0]["message"]["content"] == c["text"]  # the tiny model cannot phrase it: the template
    # the second message: right lower quadrant + rebound + fever, escalated although no single message is an emergency
    msgs = FIRST + [{"role": "assistant", "content": c["text"]}, {"role": "user", "content": "在右下腹，按着更疼，有点发烧"}]
    d2 = post(live, {"messages": msgs, "mode": "consult", "max_tokens": 40, "temperature": 0}).json()
    assert d2["ming_consult"]["kind"] == "escalate" and d2["ming_consult"]["red_flags"]
    assert "阑尾炎" in d2["choices"][0]["message"]["content"]
    # qa requests on the same server: no controller, no field
    qa = post(live, {"messages": FIRST, "max_tokens": 4, "temperature": 0}).json()
    assert "ming_consult" not in qa and qa["ming"]["mode"] == "qa"


def test_stream_carries_ming_consult_on_the_last_chunk(live):
    body = {"messages": FIRST, "mode": "consult", "max_tokens": 40, "temperature": 0}
    full = post(live, body).json()
    chunks = sse(live, body)
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    last = [ch for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert text == full["choices"][0]["message"]["content"]
    assert len(last) == 1 and last[0]["ming_consult"] == full["ming_consult"]
    kinds = {ch.get("ming_kind") for c in chunks for ch in c["choices"] if (ch["delta"].get("content") or "")}
    assert kinds == {"consult"}  # the text is the controller's, marked as such
    qa = sse(live, {**body, "mode": "qa", "max_tokens": 4})
    assert not any("ming_consult" in c or any("ming_consult" in ch for ch in c["choices"]) for c in qa)
