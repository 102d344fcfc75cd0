"""`ming serve` as a user runs it: a real process, Ctrl-C / SIGTERM shut it down cleanly (exit 0,
running streams end with [DONE]); clear errors for --backend vllm without vLLM and a busy port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fixtures.serve.live import free_port

ROOT = Path(__file__).resolve().parents[1]
MING = [sys.executable, "-m", "ming"]
Q = [{"role": "user", "content": "我最近总是头痛，怎么办？"}]


def _serve(model_dir, port, *extra):
    env = {**os.environ, "MING_THREADS": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(MING + ["serve", "--model-path", str(model_dir), "--port", str(port), "--safety", "off",
                                 "--shutdown-timeout", "1", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise AssertionError("server exited early:\n" + p.stdout.read())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.2)
    p.kill()
    raise AssertionError("server did not start")


def _long_stream(port: int, got: dict) -> threading.Thread:
    def stream():
        body = {"messages": Q, "max_tokens": 400, "temperature": 1.0, "stream": True}
        for _ in range(300):  # wait for the server to come up
            try:
                with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60) as r:
                    for text in r.iter_text():
                        got.setdefault("parts", []).append(text)
                        got["started"] = True
                return
            except httpx.ConnectError:
                time.sleep(0.1)

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    return t


def test_ctrl_c_stops_cleanly_mid_stream(tiny_qwen_dir, capsys):
    """`ming serve` in this very process (main thread, real signal handlers): Ctrl-C mid-answer."""
    import logging

    from ming.cli.main import main

    port = free_port()
    got: dict = {}
    t = _long_stream(port, got)

    def interrupt():
        for _ in range(600):
            if got.get("started"):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    ming_logger = logging.getLogger("ming")
    saved = (list(ming_logger.handlers), ming_logger.level)
    try:
        rc = main(["serve", "--model-path", str(tiny_qwen_dir), "--port", str(port), "--safety", "off",
                   "--shutdown-timeout", "1"])
    finally:
        ming_logger.handlers[:], ming_logger.level = saved
        logging.getLogger("ming.serve").setLevel(logging.NOTSET)
    t.join(10)
    assert rc == 0 and "[ming] stopped" in capsys.readouterr().err
    assert "".join(got["parts"]).rstrip().endswith("data: [DONE]")  # the running answer ended properly


def test_sigterm_stops_the_process_cleanly_mid_stream(tiny_qwen_dir):
    sig = signal.SIGTERM
    port = free_port()
    p = _serve(tiny_qwen_dir, port)
    try:
        got = {}

        def stream():
            body = {"messages": Q, "max_tokens": 400, "temperature": 1.0, "stream": True}
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60) as r:
                got["text"] = "".join(r.iter_text())

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        took = time.monotonic() - t0
        t.join(10)
        out = p.stdout.read()
        assert rc == 0, out
        assert "[ming] stopped" in out and "Application shutdown complete" in out
        assert got["text"].rstrip().endswith("data: [DONE]")  # the running answer ended properly
        assert took < 30
    finally:
        if p.poll() is None:
            p.kill()


def test_vllm_backend_without_vllm_is_a_clear_error(capsys):
    pytest.importorskip("ming.engine.vllm")
    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from ming.cli.main import main

    rc = main(["serve", "--backend", "vllm", "--port", str(free_port()), "--tensor-parallel-size", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "vllm" in err and "pip install" in err and "--backend hf" in err


def test_busy_port_is_a_clear_error(capsys):
    import socket

    from ming.cli.main import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc = main(["serve", "--port", str(port), "--safety", "off"])
    err = capsys.readouterr().err
    assert rc == 2 and f"127.0.0.1:{port}" in err and "--port" in err


def test_help_lists_server_and_model_flags():
    out = subprocess.run(MING + ["serve", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    for flag in ("--model-path", "--host", "--port", "--api-key", "--log-requests", "--max-queue", "--safety",
                 "--mode", "--backend", "--tensor-parallel-size", "--max-new-tokens"):
        assert flag in out
    assert "127.0.0.1" in out


def test_settings_validate():
    from ming.errors import MingError
    from ming.serve.settings import ServeSettings

    for bad in ({"port": 0}, {"max_queue": -1}, {"api_key": " "}):
        with pytest.raises(MingError):
            ServeSettings(**bad).validate()
