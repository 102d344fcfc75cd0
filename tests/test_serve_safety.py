"""Answers go through the turn pipeline (ming.respond): the response carries the safety decision
(`ming_safety`: action, rules triggered, findings table) and the disclaimer."""

from __future__ import annotations

import json

import httpx
import pytest
from fixtures.serve.live import LiveServer

URL = "/v1/chat/completions"
EMERGENCY = [{"role": "user", "content": "我胸口剧烈疼痛，出冷汗，喘不上气，已经二十分钟了"}]
REPORT = [{"role": "user", "content": "血常规：白细胞 15.2 ×10^9/L，血红蛋白 98 g/L，血小板 210 ×10^9/L，这是什么意思？"}]


@pytest.fixture(scope="module")
def live(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, safety="on") as srv:
        yield srv


def test_emergency_is_escalated(live):
    d = httpx.post(live.url + URL, json={"messages": EMERGENCY, "max_tokens": 4}, timeout=30).json()
    s = d["ming_safety"]
    assert s["action"] == "escalate" and s["emergency"] is True
    rules = [t["rule_id"] for t in s["triggered"]]
    assert rules and d["choices"][0]["ming_safety"]["triggered"] == s["triggered"]
    text = d["choices"][0]["message"]["content"]
    assert text.startswith(s["prefix"]) and "120" in text


def test_emergency_stream_marks_safety_text(live):
    r = httpx.post(live.url + URL, json={"messages": EMERGENCY, "max_tokens": 4, "stream": True}, timeout=30)
    events = [json.loads(b[6:]) for b in r.text.split("\n\n") if b.startswith("data: {")]
    safety_chunks = [e for e in events if e["choices"] and e["choices"][0].get("ming_kind") == "safety"]
    assert safety_chunks and "120" in safety_chunks[0]["choices"][0]["delta"]["content"]
    last = [e for e in events if e["choices"] and e["choices"][0].get("finish_reason")][-1]
    assert last["ming_safety"]["action"] == "escalate"


def test_report_findings_table(live):
    d = httpx.post(live.url + URL, json={"messages": REPORT, "max_tokens": 4}, timeout=30).json()
    s = d["ming_safety"]
    assert "REPORT-FINDINGS" in [t["rule_id"] for t in s["triggered"]]
    assert "| 项目 |" in s["findings_table"] and "白细胞" in s["findings_table"]
    assert {f["status"] for f in s["findings"]} >= {"high", "low"}


def test_strict_mode_answers_emergencies_with_the_escalation_only(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, safety="strict") as srv:
        d = httpx.post(srv.url + URL, json={"messages": EMERGENCY, "max_tokens": 50}, timeout=30).json()
    s = d["ming_safety"]
    assert s["mode"] == "strict" and s["call_model"] is False
    assert d["usage"]["completion_tokens"] == 0 and "120" in d["choices"][0]["message"]["content"]


def test_a_pasted_report_that_overflows_the_window(tiny_qwen_engine):
    """Issue 14's case through HTTP: a 400 that names the window without "truncate", an answer with it —
    the same fitting as `ming chat` (the safety layer's text counted, the report's normal items shortened)."""
    from pathlib import Path

    report = (Path(__file__).parent / "fixtures" / "turn" / "report15.txt").read_text(encoding="utf-8").strip()
    body = {"messages": [{"role": "user", "content": report}], "max_tokens": 200, "temperature": 0}
    old = tiny_qwen_engine.context_length
    tiny_qwen_engine.context_length = 700
    try:
        with LiveServer(tiny_qwen_engine, safety="on") as srv:
            err = httpx.post(srv.url + URL, json=body, timeout=60)
            ok = httpx.post(srv.url + URL, json={**body, "truncate": True}, timeout=120)
    finally:
        tiny_qwen_engine.context_length = old
    assert err.status_code == 400 and err.json()["error"]["code"] == "context_length_exceeded"
    assert "700" in err.json()["error"]["message"] and "truncate" in err.json()["error"]["message"]
    assert ok.status_code == 200, ok.text
    d = ok.json()
    assert d["ming"]["shortened_report_items"] == 8 and any("shortened" in w for w in d["ming"]["warnings"])
    assert d["usage"]["prompt_tokens"] + 200 <= 700 and d["usage"]["completion_tokens"] >= 1
    assert len(d["ming_safety"]["findings"]) == 15 and "| 项目 |" in d["choices"][0]["message"]["content"]
