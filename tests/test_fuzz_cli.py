"""Fuzz of the command-line inputs (seeded, bounded): `ming report` and `ming triage` files and stdin, and
`ming chat` stdin. Whatever comes in, each command ends with its own exit code and error lines, never a
traceback; for `ming report` a file and stdin holding the same bytes get the same verdict."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys

import pytest
from fixtures import fuzz

from ming.cli.main import main


def inputs(rng: random.Random, n: int):
    for i in range(n):
        k = rng.random()
        if k < 0.3:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        elif k < 0.5:
            data = fuzz.lines(rng, rng.randint(1, 8))
        else:
            data = "\n".join(fuzz.text(rng, 80, surrogates=False) for _ in range(rng.randint(0, 8))).encode()
        yield i, data


class Stdin(io.TextIOWrapper):
    """A stdin whose bytes are `data` (with .buffer, as the real one)."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")


def run_main(argv, data: bytes | None, capsys, monkeypatch):
    if data is not None:
        monkeypatch.setattr(sys, "stdin", Stdin(data))
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, err


@pytest.mark.parametrize("command", ["report", "triage"])
def test_fuzz_file_and_stdin(tmp_path, capsys, monkeypatch, command):
    rng = random.Random(20)
    for i, data in inputs(rng, 120):
        case = f"seed 20 case {i}: {data[:80]!r}"
        f = tmp_path / f"{i}.txt"
        f.write_bytes(data)
        rc_file, err_file = run_main([command, str(f)], None, capsys, monkeypatch)  # an exception fails the test
        rc_stdin, err_stdin = run_main([command, "-"], data, capsys, monkeypatch)
        assert rc_file in (0, 1, 2) and rc_stdin in (0, 1, 2), case
        if command == "report":  # (triage's file / stdin handling is the triage helper's: issue 20 item 7)
            assert rc_file == rc_stdin, case
            if rc_file == 2:
                assert err_file.count("\n") == 1 and err_stdin.count("\n") == 1, (case, err_file, err_stdin)


def test_fuzz_chat_stdin(tiny_qwen_dir):
    """One `ming chat` process fed 20 random lines (commands, control characters, invalid UTF-8) then a
    last question: it answers that question and exits 0 without a traceback."""
    rng = random.Random(20)
    data = fuzz.lines(rng, 20).replace(b"/exit", b"/exi").replace(b"/save", b"/sav") + "最后一个问题\n".encode()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "ming", "chat", "--model-path", str(tiny_qwen_dir), "--plain",
                        "--max-new-token", "2", "--temperature", "0"], input=data, capture_output=True, env=env,
                       timeout=300)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert r.stdout.decode("utf-8", "replace").count("明医:") >= 1
