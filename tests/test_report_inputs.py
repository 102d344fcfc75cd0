"""`ming report` with inputs a careless user gives it: a folder, binary or empty files, binary bytes on
stdin. Each is one clear error line (exit 2), never a traceback; stdin is judged like a file."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from ming.cli.main import main

RANDOM = bytes(range(256)) * 4
REPORT = "谷丙转氨酶 35 U/L 9-50\n血钾 5.9 mmol/L 3.5-5.3\n".encode()


def run_stdin(data: bytes):
    env = dict(os.environ, PYTHONIOENCODING="utf-8:surrogateescape")  # as a C / POSIX locale would read stdin
    return subprocess.run([sys.executable, "-m", "ming", "report", "-"], input=data, capture_output=True, env=env,
                          timeout=120)


def test_a_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("data,phrase", [(RANDOM, "not UTF-8"), (b"\x00\x01\x02abc", "binary"), (b"", "empty"),
                                         (b" \n\t\n", "empty")], ids=["random bytes", "nul bytes", "empty",
                                                                      "blank"])
def test_binary_and_empty_files_and_stdin_alike(tmp_path, capsys, data, phrase):
    f = tmp_path / "r.txt"
    f.write_bytes(data)
    assert main(["report", str(f)]) == 2
    assert phrase in capsys.readouterr().err
    r = run_stdin(data)
    err = r.stderr.decode()
    assert r.returncode == 2 and phrase in err and "stdin" in err and "Traceback" not in err


def test_stdin_report_still_reads(capsys):
    r = run_stdin(REPORT)
    assert r.returncode == 0, r.stderr.decode()
    assert "血钾" in r.stdout.decode() and "偏高" in r.stdout.decode()


def test_unreadable_file(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    f = tmp_path / "r.txt"
    f.write_bytes(REPORT)
    f.chmod(0)
    assert main(["report", str(f)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_in_process_stdin_without_buffer(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(REPORT.decode()))
    assert main(["report", "-"]) == 0
    assert "血钾" in capsys.readouterr().out
