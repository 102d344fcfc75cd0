"""Thread policy: all usable cores by default, --threads / MING_THREADS override, and
OMP_WAIT_POLICY=PASSIVE set by `ming` before torch or llama.cpp load OpenMP."""

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


def test_main_sets_wait_policy_before_openmp_loads():
    code = ("import os, io, contextlib\n"
            "from ming.cli.main import main\n"
            "from ming.engine.threads import openmp_loaded\n"
            "before = openmp_loaded()\n"
            "with contextlib.redirect_stdout(io.StringIO()): main([])\n"
            "print(before, os.environ.get('OMP_WAIT_POLICY'))")
    assert _run(code) == "False PASSIVE"


def test_user_choice_is_kept():
    code = "from ming.cli.main import main\nimport os, io, contextlib\n" \
           "with contextlib.redirect_stdout(io.StringIO()): main([])\nprint(os.environ['OMP_WAIT_POLICY'])"
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
