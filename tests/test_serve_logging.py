"""No patient text in the server's logs unless --log-requests."""

from __future__ import annotations

import logging

import httpx
from fixtures.serve.live import LiveServer

SECRET = "患者王小明身份证110101199001011234胸闷"
URL = "/v1/chat/completions"


def _exercise(srv):
    ok = [{"role": "user", "content": SECRET}]
    assert httpx.post(srv.url + URL, json={"messages": ok, "max_tokens": 3}, timeout=30).status_code == 200
    r = httpx.post(srv.url + URL, json={"messages": ok, "max_tokens": 3, "stream": True}, timeout=30)
    assert r.status_code == 200 and "[DONE]" in r.text
    # error paths quote the request back to the client, never into the log
    bad = [{"role": "surgeon", "content": SECRET}]
    assert httpx.post(srv.url + URL, json={"messages": bad}).status_code == 400
    assert httpx.post(srv.url + URL, json={"messages": [{"role": "user", "content": SECRET * 300}]}).status_code == 400
    assert httpx.post(srv.url + URL, content=('{"messages": "' + SECRET).encode()).status_code == 400


def test_no_patient_text_in_logs_by_default(tiny_qwen_engine, caplog):
    caplog.set_level(logging.DEBUG)
    with LiveServer(tiny_qwen_engine) as srv:
        _exercise(srv)
    assert "prompt" in caplog.text and "completion" in caplog.text  # the requests were logged…
    assert SECRET not in caplog.text and "王小明" not in caplog.text  # …without their text


def test_log_requests_logs_messages_and_answers(tiny_qwen_engine, caplog):
    caplog.set_level(logging.INFO, logger="ming")
    with LiveServer(tiny_qwen_engine, log_requests=True) as srv:
        _exercise(srv)
    assert SECRET in caplog.text and "answer[0]" in caplog.text
