"""Thread policy: generation decodes on the free cores (adaptive threads, OpenMP's default wait), --threads /
MING_THREADS fix the count, and `ming train` sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ming.engine import threads


def test_resolve(monkeypatch):
    monkeypatch.delenv("MING_THREADS", raising=False)
    assert threads.resolve(None) == threads.default_threads() >= 1
    assert threads.resolve(3) == 3
    monkeypatch.setenv("MING_THREADS", "1")
    assert threads.resolve(None) == 1
    assert threads.resolve(2) == 2  # the flag wins over the environment
    from ming.errors import MingError

    with pytest.raises(MingError):
        threads.resolve(-1)


def _run(code: str, env_extra: dict | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_main_sets_passive_for_training_only():
    """`ming train` sets PASSIVE before anything loads OpenMP; chat / serve / eval keep OpenMP's default wait
    (two threads that spin briefly at each barrier decode faster) and adapt their thread count instead."""
    code = ("import os, io, contextlib\n"
            "from ming.cli.main import main\n"
            "from ming.engine.threads import openmp_loaded\n"
            "before = openmp_loaded()\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    main([])\n"
            "    chat = os.environ.get('OMP_WAIT_POLICY')\n"
            "    main(['train', '--config', '/nonexistent/train.yaml'])\n"
            "print(before, chat, os.environ.get('OMP_WAIT_POLICY'))")
    assert _run(code) == "False None PASSIVE"


def test_user_choice_is_kept():
    code = ("from ming.cli.main import main\nimport os, io, contextlib\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    main(['train', '--config', '/nonexistent/train.yaml'])\n"
            "print(os.environ['OMP_WAIT_POLICY'])")
    assert _run(code, {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_set_wait_policy_reports_too_late():
    code = ("import torch\nfrom ming.engine import threads\n"
            "print(threads.openmp_loaded(), threads.set_wait_policy())")
    assert _run(code) == "True False"  # torch already loaded libgomp: the setting cannot reach it


def test_configure_sets_torch_threads():
    import torch

    old = torch.get_num_threads()
    try:
        assert threads.configure(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


class _Clock:
    """A clock the test moves by hand (the decoder's per-token times)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_adaptive_checks_at_start_every_n_tokens_and_on_a_slow_token():
    """When the governor looks again: per reply, every n tokens (n/4 while below the maximum) and at once on a
    token 3x slower than the fastest. The clock and the free-core count are the test's; the real count of
    free cores is tested against a real busy process below."""
    applied, free = [], {"n": 4}
    clock = _Clock()
    g = threads.AdaptiveThreads(4, applied.append, every=8, clock=clock, free=lambda m: min(m, free["n"]))
    g.start()
    assert g.checks == 1 and g.now == 4 and applied == []
    g.step()  # the first token (its time includes the prompt) starts the clock
    for _ in range(6):  # 10 ms tokens: no check until the 8th
        clock.t += 0.010
        g.step()
    assert g.checks == 1
    free["n"] = 1  # another process takes 3 cores: the next token is 10x slower, checked at once
    clock.t += 0.100
    g.step()
    assert g.checks == 2 and g.now == 1 and applied == [1]  # (a drop is confirmed by a second look)
    clock.t += 0.040  # below the maximum: every 8 // 4 = 2 tokens
    g.step()
    assert g.checks == 2
    clock.t += 0.040
    g.step()
    assert g.checks == 3 and g.now == 1
    free["n"] = 4
    for _ in range(2):
        clock.t += 0.040
        g.step()
    assert g.checks == 4 and g.now == 4 and applied == [1, 4]
    for i in range(7):  # back at the maximum: every 8 again; 2.5x the fastest does not trigger
        clock.t += 0.025 if i == 3 else 0.010
        g.step()
    assert g.checks == 4
    clock.t += 0.010
    g.step()
    assert g.checks == 5
    fixed = threads.AdaptiveThreads(4, applied.append, enabled=False, clock=clock)
    fixed.start()
    for _ in range(40):
        clock.t += 1.0
        fixed.step()
    assert fixed.checks == 0 and fixed.now == 4
    assert threads.AdaptiveThreads(1, applied.append).enabled is False  # one thread has nothing to adapt


def test_a_batch_step_that_reads_a_prompt_is_not_a_stolen_core():
    """A batching engine's steps differ in size: 8 next tokens take ~100 ms, 8 plus a 128-token prompt chunk
    ~400 ms. Each step is compared with earlier steps of as many tokens, so the prompt steps trigger nothing;
    an 8-token step that suddenly takes 1 s still does."""
    applied, free = [], {"n": 2}
    clock = _Clock()
    g = threads.AdaptiveThreads(2, applied.append, every=32, clock=clock, free=lambda m: min(m, free["n"]))
    g.start()
    g.step(8)
    for i in range(20):  # a new request's prompt every 4th step
        clock.t += 0.400 if i % 4 == 3 else 0.100
        g.step(136 if i % 4 == 3 else 8)
    assert g.checks == 1 and applied == []
    free["n"] = 1
    clock.t += 1.0
    g.step(8)
    assert g.checks == 2 and g.now == 1 and applied == [1]


def _hog(seconds: float = 30.0) -> subprocess.Popen:
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc only")
def test_runnable_others_sees_a_busy_process():
    import time

    assert threads.free_cores(1) == 1
    hog = _hog()
    try:
        time.sleep(0.3)
        seen = max(threads.runnable_others() for _ in range(5))
        assert seen >= 1  # the busy loop is runnable all the time
        assert 1 <= threads.free_cores(4) <= 4
        if threads.default_threads() == 2:
            assert threads.free_cores(2) == 1
    finally:
        hog.kill()
        hog.wait()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc only")
@pytest.mark.parametrize("backend", ["llamacpp", "hf"])
def test_decodes_on_free_cores_only(backend, request):
    """Adaptive threads (the default when --threads is not given), on both CPU backends: with another process
    holding a core of a 2-core machine, decoding drops to one thread instead of waiting at every barrier for a
    descheduled one (llama.cpp: llama_set_n_threads; transformers: torch.set_num_threads on the generating
    thread); an explicit --threads stays as given, and the thread count never changes the tokens."""
    import time

    import torch

    from ming.config import ModelOptions
    from ming.engine import GenerationConfig, create_engine

    if backend == "llamacpp":
        path = request.getfixturevalue("tiny_f32_gguf_path")
    else:
        path = request.getfixturevalue("tiny_qwen_dir")
    old = torch.get_num_threads()
    try:
        adaptive = create_engine(ModelOptions(model_path=str(path), backend=backend, device="cpu"))
        fixed = create_engine(ModelOptions(model_path=str(path), backend=backend, device="cpu", threads=2))
        assert adaptive.adaptive_threads and not fixed.adaptive_threads
        msgs = [{"role": "user", "content": "你好"}]
        gen = GenerationConfig(max_new_tokens=6, temperature=0)
        hog = _hog()
        try:
            time.sleep(0.3)
            a = adaptive.chat(msgs, gen).text
            if threads.default_threads() == 2:
                assert adaptive._governor.now == 1
                if backend == "hf":
                    assert torch.get_num_threads() == 1
            b = fixed.chat(msgs, gen).text
            assert fixed._governor.now == 2 and (backend != "hf" or torch.get_num_threads() == 2)
        finally:
            hog.kill()
            hog.wait()
        assert a == b
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_f32_gguf_path(tmp_path_factory, qwen_tokenizer):
    pytest.importorskip("llama_cpp")
    from test_prefix_cache_llamacpp import tiny_gguf

    return tiny_gguf(tmp_path_factory, qwen_tokenizer, "f32")[1]
