"""The OpenAI-URL path against a minimal OpenAI-compatible stub server on 127.0.0.1 (real HTTP):
`ming eval --base-url`, bounded retries, concurrency, a run killed with SIGKILL and resumed,
and `ming eval compare`."""

import json
import re
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fixtures.eval.fakes import FIXTURES, exam_taker
from ming.cli.main import main
from ming.errors import MingError

MCQ = str(FIXTURES / "mcq_small.jsonl")


class Stub:
    """/v1/models and /v1/chat/completions. `fail_first` requests answer 500; `delay` seconds per answer."""

    def __init__(self, answer=exam_taker, fail_first=0, delay=0.0):
        self.answer, self.fail_first, self.delay = answer, fail_first, delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, obj):
                data = json.dumps(obj, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": "stub-ming", "object": "model"}]})
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                    fail = len(stub.requests) <= stub.fail_first
                if fail:
                    return self._send(500, {"error": {"message": "overloaded"}})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                time.sleep(stub.delay)
                text = stub.answer(body["messages"])
                self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def test_eval_against_url(stub, tmp_path, capsys):
    out = tmp_path / "url"
    rc = main(["eval", "mcq", "--data", MCQ, "--base-url", stub.url, "--api-key", "sk-test", "--output", str(out),
               "--no-progress", "--batch-size", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| mcq | generate | 6 | 83.3 |" in printed
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["model"]["name"] == "stub-ming" and rep["model"]["base_url"] == stub.url  # from GET /v1/models
    assert len(stub.requests) == 6 and all(r["auth"] == "Bearer sk-test" for r in stub.requests)
    body = stub.requests[0]["body"]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 24 and isinstance(body["seed"], int)


def test_retries_then_succeeds(tmp_path):
    from ming.engine.base import GenerationConfig
    from ming.eval.clients import OpenAIClient

    s = Stub(fail_first=2)
    try:
        c = OpenAIClient(s.url, "m", retries=3, backoff=0.01)
        r = c.chat([{"role": "user", "content": "高血压患者饮食"}], GenerationConfig(max_new_tokens=8, temperature=0))
        assert r.text.startswith("答案：B") and c.retried == 2 and len(s.requests) == 3
        s.fail_first = 100
        with pytest.raises(MingError, match=r"failed after 2 attempts.*HTTP 500"):
            OpenAIClient(s.url, "m", retries=1, backoff=0.01).chat([{"role": "user", "content": "x"}],
                                                                   GenerationConfig(max_new_tokens=8))
    finally:
        s.close()


def test_unreachable_server_is_a_clear_error(tmp_path):
    from ming.eval.clients import OpenAIClient

    with pytest.raises(MingError, match="Is the server running"):
        OpenAIClient("http://127.0.0.1:9", "m", retries=1, backoff=0.01).chat(
            [{"role": "user", "content": "x"}], __import__("ming.engine.base").engine.base.GenerationConfig())


def test_sigkill_mid_run_then_resume(tmp_path):
    """A real process killed with SIGKILL while items are being written; the same command then
    finishes the run with every item exactly once."""
    s = Stub(delay=0.4)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ming", "eval", "mcq", "--data", MCQ, "--base-url", s.url, "--api-model", "m",
           "--output", str(out), "--no-progress"]
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        res = out / "results.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not res.exists() or res.read_text(encoding="utf-8").count("\n") < 2):
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        before = res.read_text(encoding="utf-8").count("\n")
        assert 2 <= before < 6
        s.delay = 0.0
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ids = [json.loads(line)["id"] for line in res.read_text(encoding="utf-8").splitlines()]
        assert sorted(ids) == ["q1", "q2", "q3", "q4", "q5", "q6"]
        asked = [r["body"]["messages"][-1]["content"] for r in s.requests]
        assert len(asked) <= 6 + 1  # at most the item in flight at the kill is asked twice
    finally:
        s.close()


def test_compare_two_runs(stub, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["eval", "mcq", "--data", MCQ, "--base-url", stub.url, "--output", str(a), "--no-progress"]) == 0
    stub.answer = lambda m: "答案：A"
    assert main(["eval", "mcq", "--data", MCQ, "--base-url", stub.url, "--output", str(b), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", "compare", str(a), str(b)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"\| mcq \| accuracy \| 6 \| 83\.3% \[4\d\.\d%, 9\d\.\d%\] \| 16\.7% \[\d\.\d%, 5\d\.\d%\] \| "
                     r"−66\.7% \|", table), table
    assert "McNemar" in table
    assert main(["eval", "compare", str(a), str(b), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["only_a"] == 5 and rows[0]["only_b"] == 1 and rows[0]["p"] == pytest.approx(2 * 7 / 64)


def test_eval_against_a_real_ming_serve(tiny_qwen_engine, tmp_path):
    """The OpenAI-URL path end to end against `ming serve` (uvicorn on 127.0.0.1, tiny model)."""
    live = pytest.importorskip("fixtures.serve.live")
    out = tmp_path / "served"
    with live.LiveServer(tiny_qwen_engine, api_key="k-1") as srv:
        rc = main(["eval", "mcq", "--data", MCQ, "--base-url", srv.url + "/v1", "--api-key", "k-1", "--limit", "3",
                   "--max-new-tokens", "4", "--output", str(out), "--no-progress"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    t = rep["tasks"]["mcq"]
    assert t["n_done"] == 3 and t["unparsed"] + t["accuracy_parsed"]["n"] == 3
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["completion_tokens"] <= 4 and isinstance(r["output"], str) for r in rows)
    assert rep["model"]["kind"] == "http" and rep["model"]["name"]


def test_llm_patient_over_http(tmp_path):
    """Doctor and LLM patient both served over HTTP: the patient answers in JSON naming what it revealed."""
    def answer(messages):
        if messages[0]["role"] == "system" and "扮演" in messages[0]["content"]:
            return '{"reply": "一周内，晚上更厉害", "revealed": [1, 2]}'
        if sum(m["role"] == "assistant" for m in messages) == 0:
            return "请问持续多久了？"
        return "诊断：湿疹。"

    s = Stub(answer=answer)
    out = tmp_path / "llmp"
    try:
        rc = main(["eval", "meddialog_cn_100", "--data", str(FIXTURES / "dialogue_cases.jsonl"), "--limit", "1",
                   "--base-url", s.url, "--api-model", "m", "--patient", "llm", "--max-turns", "3",
                   "--output", str(out), "--no-progress"])
    finally:
        s.close()
    assert rc == 0
    row = json.loads((out / "results.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["transcript"][2]["text"] == "一周内，晚上更厉害" and row["revealed"] == [1, 2]
    assert row["diagnosis_hit"] is True and row["patient_parse_failures"] == 0 and row["turns"] == 2
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["tasks"]["meddialog_cn_100"]["prompt"]["patient_version"] == "patient-v1"
