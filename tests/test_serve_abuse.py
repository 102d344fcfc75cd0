"""Bad input, bad clients and overload never take the server down: each gets a 4xx in OpenAI's
error format (or 429 + Retry-After), and the server keeps answering. Real server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import pytest
from fixtures.serve.live import LiveServer

Q = [{"role": "user", "content": "我最近总是头痛，怎么办？"}]
URL = "/v1/chat/completions"


@pytest.fixture(scope="module")
def live(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine) as srv:
        yield srv


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def healthy(live) -> bool:
    return httpx.post(live.url + URL, json={"messages": Q, "max_tokens": 2}, timeout=30).status_code == 200


BAD_BODIES = [
    ("malformed json", b'{"messages": [{"role": "user", "content": "hi"}', "invalid_json", "not valid JSON"),
    ("not an object", b'[1, 2, 3]', "invalid_json", "JSON object"),
    ("empty body", b"", "invalid_json", "no body"),
    ("binary garbage", b"\xff\xfe\x00garbage", "invalid_json", "not valid JSON"),
]


@pytest.mark.parametrize("name,raw,code,phrase", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_malformed_bodies(live, name, raw, code, phrase):
    r = httpx.post(live.url + URL, content=raw, headers={"content-type": "application/json"})
    err = error_of(r, 400)
    assert err["code"] == code and phrase in err["message"] and err["type"] == "invalid_request_error"


BAD_REQUESTS = [
    ("messages missing", {"model": "x"}, "messages"),
    ("messages a string", {"messages": "hello"}, "messages"),
    ("empty messages", {"messages": []}, "messages"),
    ("message not an object", {"messages": ["hi"]}, "messages.0"),
    ("content a number", {"messages": [{"role": "user", "content": 42}]}, "messages.0.content"),
    ("temperature a word", {"messages": Q, "temperature": "hot"}, "temperature"),
    ("temperature too high", {"messages": Q, "temperature": 9}, "temperature"),
    ("top_p zero", {"messages": Q, "top_p": 0}, "top_p"),
    ("negative max_tokens", {"messages": Q, "max_tokens": -5}, "max_tokens"),
    ("absurd max_tokens", {"messages": Q, "max_tokens": 10**12}, "max_tokens"),
    ("stream not a bool", {"messages": Q, "stream": "yes please"}, "stream"),
    ("n zero", {"messages": Q, "n": 0}, "n"),
    ("stop a number", {"messages": Q, "stop": 5}, "stop"),
]


@pytest.mark.parametrize("name,body,param", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_wrong_types_and_ranges(live, name, body, param):
    err = error_of(httpx.post(live.url + URL, json=body), 400)
    assert err["param"].startswith(param), err
    assert err["param"] in err["message"]


MESSAGE_ERRORS = [
    ("unknown role", [{"role": "doctor", "content": "hi"}], "invalid_role", "'doctor'"),
    ("tool role", Q + [{"role": "tool", "content": "{}"}], "invalid_role", "system, user and assistant"),
    ("empty question", [{"role": "user", "content": "   "}], "empty_message", "empty"),
    ("null question", [{"role": "user", "content": None}], "empty_message", "no content"),
    ("ends with assistant", Q + [{"role": "assistant", "content": "ok"}], "invalid_messages", "last message"),
    ("two user turns", Q + Q, "invalid_messages", "alternate"),
    ("system in the middle", Q + [{"role": "assistant", "content": "a"}, {"role": "system", "content": "s"},
                                   {"role": "user", "content": "q"}], "invalid_messages", "system"),
]


@pytest.mark.parametrize("name,messages,code,phrase", MESSAGE_ERRORS, ids=[m[0] for m in MESSAGE_ERRORS])
def test_bad_conversations(live, name, messages, code, phrase):
    err = error_of(httpx.post(live.url + URL, json={"messages": messages}), 400)
    assert err["code"] == code and phrase in err["message"], err


def test_max_tokens_beyond_the_context_window(live):
    err = error_of(httpx.post(live.url + URL, json={"messages": Q, "max_tokens": 100_000}), 400)
    assert err["code"] == "max_tokens_too_large" and "512" in err["message"] and "100000" in err["message"]


def test_prompt_longer_than_the_context_window(live):
    long_q = [{"role": "user", "content": "头痛" * 600}]
    err = error_of(httpx.post(live.url + URL, json={"messages": long_q}), 400)
    assert err["code"] == "context_length_exceeded" and "512" in err["message"] and "truncate" in err["message"]
    # truncation cannot help when the question alone is too long
    err = error_of(httpx.post(live.url + URL, json={"messages": long_q, "truncate": True}), 400)
    assert err["code"] == "context_length_exceeded" and "512" in err["message"]


def test_truncate_drops_the_oldest_exchanges(live):
    history = []
    for i in range(12):
        history += [{"role": "user", "content": f"第{i}个问题：我头痛发热咳嗽怎么办？" * 2},
                    {"role": "assistant", "content": f"第{i}个回答：多喝水，注意休息，必要时就医。" * 2}]
    body = {"messages": history + Q, "max_tokens": 8}
    err = error_of(httpx.post(live.url + URL, json=body), 400)
    assert err["code"] == "context_length_exceeded"
    r = httpx.post(live.url + URL, json={**body, "truncate": True}, timeout=60)
    assert r.status_code == 200, r.text
    d = r.json()
    dropped = d["ming"]["truncated_exchanges"]
    assert 0 < dropped < 12 and any("dropped" in w for w in d["ming"]["warnings"])
    assert d["usage"]["prompt_tokens"] + 8 <= 512


def test_oversized_body_gets_413(live):
    r = httpx.post(live.url + URL, content=b"x" * (9 * 1024 * 1024), headers={"content-type": "application/json"})
    assert error_of(r, 413)["code"] == "body_too_large"


def test_unknown_routes_and_methods(live):
    assert error_of(httpx.get(live.url + "/v1/completions"), 404)["type"] == "not_found_error"
    assert error_of(httpx.get(live.url + URL), 405)["message"].startswith("method GET")


def test_still_healthy_after_the_abuse(live):
    assert healthy(live)
    assert live.scheduler.wait_idle(15)  # requests cancelled by earlier tests drain; nothing stays stuck


# ------------------------------------------------------------------------------------------------
# API key
# ------------------------------------------------------------------------------------------------
def test_api_key(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, api_key="s3cret") as srv:
        body = {"messages": Q, "max_tokens": 2}
        err = error_of(httpx.post(srv.url + URL, json=body), 401)
        assert err["code"] == "missing_api_key" and err["type"] == "authentication_error"
        err = error_of(httpx.post(srv.url + URL, json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert err["code"] == "invalid_api_key"
        assert error_of(httpx.post(srv.url + URL, json=body, headers={"Authorization": "s3cret"}), 401)
        assert error_of(httpx.get(srv.url + "/v1/models"), 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.post(srv.url + URL, json=body, headers=ok).status_code == 200
        assert httpx.get(srv.url + "/v1/models", headers=ok).status_code == 200
        # the page and the health check stay open (the page asks for the key)
        h = httpx.get(srv.url + "/health").json()
        assert h["auth_required"] is True
        assert httpx.get(srv.url + "/").status_code == 200
        # a bad body without a key is a 401, not a 400: nothing is parsed for strangers
        assert httpx.post(srv.url + URL, content=b"{bad").status_code == 401


# ------------------------------------------------------------------------------------------------
# queue, disconnects, concurrency
# ------------------------------------------------------------------------------------------------
def _start_long_stream(url: str, started: threading.Event, stop: threading.Event, out: dict):
    """Stream a long answer; after the first content chunk set `started`; leave when `stop` is set."""
    def run():
        body = {"messages": Q, "max_tokens": 400, "temperature": 1.0, "seed": 1, "stream": True}
        with httpx.stream("POST", url + URL, json=body, timeout=60) as r:
            out["status"] = r.status_code
            n = 0
            for line in r.iter_lines():
                if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                    n += 1
                    started.set()
                if stop.is_set():
                    break  # closes the connection mid-stream
            out["chunks"] = n
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_full_queue_429_with_retry_after_and_disconnect_frees_the_slot(tiny_qwen_engine, caplog):
    caplog.set_level(logging.INFO, logger="ming")
    with LiveServer(tiny_qwen_engine, max_queue=0) as srv:
        started, stop, out = threading.Event(), threading.Event(), {}
        t = _start_long_stream(srv.url, started, stop, out)
        assert started.wait(30)
        assert srv.scheduler.stats()["running"] == 1
        t0 = time.monotonic()
        r = httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 2}, timeout=10)
        assert time.monotonic() - t0 < 5  # answered at once, never hangs
        err = error_of(r, 429)
        assert err["code"] == "queue_full" and err["type"] == "rate_limit_error"
        assert int(r.headers["retry-after"]) >= 1
        rs = httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 2, "stream": True}, timeout=10)
        assert rs.status_code == 429 and "retry-after" in rs.headers
        # the client goes away mid-stream: its generation stops and the slot is free again
        stop.set()
        t.join(10)
        assert srv.scheduler.wait_idle(10)
        assert out["status"] == 200 and out["chunks"] < 400
        r = httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 2}, timeout=30)
        assert r.status_code == 200
        done = [rec.getMessage() for rec in caplog.records if "completion" in rec.getMessage()]
        first = int(done[0].split("completion ")[1].split(" tok")[0])
        assert first < 400  # cancelled well before max_tokens


def test_queue_holds_max_queue_waiting_requests(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, max_queue=2) as srv:
        started, stop, out = threading.Event(), threading.Event(), {}
        t = _start_long_stream(srv.url, started, stop, out)
        assert started.wait(30)
        results = {}

        def ask(i):
            results[i] = httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 2}, timeout=60)

        waiting = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for w in waiting:
            w.start()
        deadline = time.monotonic() + 10
        while srv.scheduler.stats()["waiting"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.scheduler.stats()["waiting"] == 2
        assert httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 2}).status_code == 429
        stop.set()
        t.join(10)
        for w in waiting:
            w.join(30)
        assert [results[i].status_code for i in range(2)] == [200, 200]


def test_non_streaming_client_disconnect_frees_the_slot(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, max_queue=0) as srv:
        with pytest.raises(httpx.ReadTimeout):
            # 400 tokens take well over 0.3 s even on a fast machine: the client gives up mid-answer
            httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 400, "temperature": 1.0}, timeout=0.3)
        assert srv.scheduler.wait_idle(10)
        assert httpx.post(srv.url + URL, json={"messages": Q, "max_tokens": 2}, timeout=30).status_code == 200


def test_concurrent_streams_do_not_mix(live):
    questions = ["头痛怎么办？", "发热三天了", "咳嗽有痰", "高血压吃什么药"]
    bodies = [{"messages": [{"role": "user", "content": q}], "max_tokens": 8, "temperature": 1.0, "top_p": 1.0,
               "seed": 100 + i} for i, q in enumerate(questions)]
    alone = [httpx.post(live.url + URL, json=b, timeout=60).json()["choices"][0]["message"]["content"]
             for b in bodies]
    assert len(set(alone)) == len(alone)
    got: dict[int, tuple[str, set]] = {}

    def stream(i):
        with httpx.stream("POST", live.url + URL, json={**bodies[i], "stream": True}, timeout=60) as r:
            text, ids = "", set()
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    ev = json.loads(line[6:])
                    ids.add(ev["id"])
                    if ev["choices"]:
                        text += ev["choices"][0]["delta"].get("content", "")
            got[i] = (text, ids)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(bodies))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for i in range(len(bodies)):
        text, ids = got[i]
        assert text == alone[i] and len(ids) == 1
    assert len({next(iter(got[i][1])) for i in got}) == len(bodies)


def test_scheduler_without_http(tiny_qwen_engine):
    """The queue logic alone: FIFO order, 429 beyond capacity, cancelled waiting jobs get a 503."""
    from ming.serve.errors import APIError
    from ming.serve.queue import Job, Scheduler

    sched = Scheduler(tiny_qwen_engine, max_queue=2)
    gate = threading.Event()
    order = []

    def work(tag):
        def fn(cancel):
            gate.wait(10)
            order.append(tag)
            yield tag
        return fn

    jobs = [Job.threaded(work(i)) for i in range(3)]
    for job, _ in jobs:
        sched.submit(job)
    with pytest.raises(APIError) as e:
        sched.submit(Job.threaded(work(9))[0])
    assert e.value.status == 429 and int(e.value.headers["Retry-After"]) >= 1
    jobs[2][0].cancel.set()  # leaves while waiting
    gate.set()
    assert list(jobs[0][1]()) == [0] and list(jobs[1][1]()) == [1]
    with pytest.raises(APIError) as e:
        list(jobs[2][1]())
    assert e.value.status == 503
    assert order == [0, 1]
    sched.close()
    with pytest.raises(APIError) as e:
        sched.submit(Job.threaded(work(5))[0])
    assert e.value.status == 503


# ------------------------------------------------------------------------------------------------
# hardening (issue 20)
# ------------------------------------------------------------------------------------------------
def test_chunked_body_over_the_limit_gets_413_before_parsing(live):
    """The limit holds whatever the transfer encoding: a chunked body is counted as it arrives."""
    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10 * 16):
            yield "头".encode() * (64 * 1024 // 3)
        yield b'"}]}'

    r = httpx.post(live.url + URL, content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert "content-length" not in r.request.headers  # really chunked
    assert error_of(r, 413)["code"] == "body_too_large"
    assert healthy(live)


def test_text_too_long_for_any_tokenization_is_refused_without_tokenizing(live):
    err = error_of(httpx.post(live.url + URL, json={"messages": [{"role": "user", "content": "头" * 2_000_000}]},
                              timeout=60), 400)
    assert err["code"] == "context_length_exceeded" and "2000000 characters" in err["message"]


@pytest.mark.parametrize("raw", [rb'{"messages": [{"role": "user", "content": "abc \ud800"}]}',
                                 rb'{"messages": [{"role": "user", "content": "hi"}], "\udfff": 1}'],
                         ids=["in a value", "in a field name"])
def test_lone_surrogate_is_a_400(live, raw):
    err = error_of(httpx.post(live.url + URL, content=raw, headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_text" and "surrogate" in err["message"]


@pytest.mark.parametrize("depth", [100_000, 1000, 40])
def test_deeply_nested_json_is_a_400(live, depth):
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * depth + b"]" * depth + b"}"
    err = error_of(httpx.post(live.url + URL, content=raw, headers={"content-type": "application/json"}), 400)
    assert err["code"] == "invalid_json" and "nested" in err["message"]
    assert healthy(live)


def test_json_error_messages_read_well(live):
    cut = b'{"messages": [{"role": "user", "content": "hi'
    err = error_of(httpx.post(live.url + URL, content=cut), 400)
    assert "truncated JSON" in err["message"] and "line 1" in err["message"]
    ctl = b'{"messages": [{"role": "user", "content": "a\x01b"}]}'
    err = error_of(httpx.post(live.url + URL, content=ctl), 400)
    assert "Invalid control character at line 1 column" in err["message"] and "at at" not in err["message"]


class _Sink(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize("log_requests", [False, True])
def test_internal_errors_log_one_line_without_traceback(tiny_qwen_engine, monkeypatch, log_requests):
    """A bug (here: prepare raising) is a 500 in OpenAI's format and one log line; uvicorn prints no
    "Exception in ASGI application" traceback; the traceback goes to ming's log only with --log-requests."""
    sink = _Sink()
    try:
        with LiveServer(tiny_qwen_engine, log_requests=log_requests) as srv:
            for name in ("uvicorn.error", "ming.serve"):  # after uvicorn has set up its loggers
                logging.getLogger(name).addHandler(sink)

            def broken(*args, **kw):
                raise RuntimeError("patient 张三 has HIV")
            monkeypatch.setattr(srv.app.state.service, "prepare", broken)
            err = error_of(httpx.post(srv.url + URL, json={"messages": Q}), 500)
            assert err["type"] == "server_error" and "RuntimeError" in err["message"] and "张三" not in err["message"]
    finally:
        for name in ("uvicorn.error", "ming.serve"):
            logging.getLogger(name).removeHandler(sink)
    assert not [r for r in sink.records if r.name.startswith("uvicorn")], [r.getMessage() for r in sink.records]
    internal = [r for r in sink.records if "internal error RuntimeError" in r.getMessage()]
    assert len(internal) == 1 and bool(internal[0].exc_info) is log_requests


def test_docs_need_the_api_key_when_one_is_set(tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, api_key="s3cret") as srv:
        for path in ("/docs", "/openapi.json"):
            err = error_of(httpx.get(srv.url + path), 401)
            assert err["code"] == "missing_api_key"
            assert httpx.get(srv.url + path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    with LiveServer(tiny_qwen_engine) as srv:  # no key: open, like the API itself
        assert httpx.get(srv.url + "/openapi.json").status_code == 200


def test_unknown_field_names_never_reach_the_log(live, caplog):
    """A field name may be anything, a patient's name and diagnosis or a forged log line: the log gets the
    count; the client gets the names back in `ming.ignored`."""
    caplog.set_level(logging.INFO, logger="ming")
    name = "张三 确诊 HIV\n23:59:59 INFO ming.serve: forged"
    r = httpx.post(live.url + URL, json={"messages": Q, "max_tokens": 2, name: 1, "other": 2}, timeout=60)
    assert r.status_code == 200 and sorted(r.json()["ming"]["ignored"]) == sorted([name, "other"])
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "张三" not in logged and "forged" not in logged and "other" not in logged
    assert "2 unknown field(s)" in logged


def test_cancelled_answers_are_logged_as_cancelled(tiny_qwen_engine, caplog):
    caplog.set_level(logging.INFO, logger="ming")
    with LiveServer(tiny_qwen_engine) as srv:
        started, stop, out = threading.Event(), threading.Event(), {}
        t = _start_long_stream(srv.url, started, stop, out)
        assert started.wait(30)
        stop.set()  # the client leaves mid-answer
        t.join(10)
        assert srv.scheduler.wait_idle(10)
    done = [rec.getMessage() for rec in caplog.records if " completion " in rec.getMessage()]
    assert len(done) == 1 and "finish cancelled" in done[0], done


def test_retry_after_follows_the_measured_service_time(tiny_qwen_engine):
    """Retry-After comes from how long the last answers took, not from a fixed guess (which said 15 s for
    a burst that was over in 4.5 s)."""
    from ming.serve.errors import APIError
    from ming.serve.queue import Job, Scheduler

    sched = Scheduler(tiny_qwen_engine, max_queue=2)

    def quick(cancel):
        time.sleep(0.05)
        yield 1

    for _ in range(4):
        job, results = Job.threaded(quick)
        sched.submit(job)
        assert list(results()) == [1]
    gate = threading.Event()

    def held(cancel):
        gate.wait(10)
        yield 1

    jobs = [Job.threaded(held) for _ in range(3)]
    for job, _ in jobs:
        sched.submit(job)
    with pytest.raises(APIError) as e:
        sched.submit(Job.threaded(held)[0])
    # two waiting and this one, at ~0.05 s each: a second or two
    assert e.value.status == 429 and 1 <= int(e.value.headers["Retry-After"]) <= 2
    gate.set()
    assert [list(results()) for _, results in jobs] == [[1], [1], [1]]
    sched.close()
