"""Bad input files get one clear error line naming the file (and line), never a traceback: data readers'
JSON messages, `ming triage` on a folder, and `--rules` files that are binary, empty or not a rule file."""

from __future__ import annotations

import subprocess
import sys

from ming.data.errorlog import ErrorLog
from ming.data.rawio import iter_jsonl


def _problems(tmp_path, raw: bytes) -> tuple[list, ErrorLog]:
    f = tmp_path / "in.jsonl"
    f.write_bytes(raw)
    errors = ErrorLog()
    rows = list(iter_jsonl(f, errors=errors))
    return rows, errors


def test_json_messages_read_well(tmp_path):
    _, errors = _problems(tmp_path, b'{"a": "x\x01y"}\n{"id": "cut", "text": \n{"ok": 1}\n')
    ctrl, cut = errors.examples
    assert ctrl.endswith(":1: malformed JSON (Invalid control character at column 9)"), ctrl
    assert " at at " not in ctrl
    assert cut.endswith(":2: malformed JSON (truncated JSON: the line ends after column 21 before it is closed)"), cut


def test_gbk_line_warning_names_file_and_line(tmp_path):
    rows, errors = _problems(tmp_path, '{"q": "ok"}\n'.encode() + '{"q": "发热"}\n'.encode("gbk"))
    assert [r for _, r in rows] == [{"q": "ok"}, {"q": "发热"}]
    assert errors.warning_examples == [f"{tmp_path / 'in.jsonl'}:2: not UTF-8; decoded as GB18030/GBK"]


def _triage(*args, stdin: bytes = '{"text": "胸口疼，出冷汗"}\n'.encode()):
    return subprocess.run([sys.executable, "-m", "ming", "triage", *args], input=stdin, capture_output=True,
                          timeout=120)


def test_triage_folder_and_bad_rule_files_are_one_line_errors(tmp_path):
    r = _triage(str(tmp_path))
    assert r.returncode == 2 and b"is a folder" in r.stderr and b"Traceback" not in r.stderr
    cases = {"binary.yaml": b"\x00\x01\xff", "latin1.yaml": b"rules: \xff\xfe\n", "empty.yaml": b"",
             "list.yaml": b"- a\n- b\n", "broken.yaml": b"rules: [unclosed\n"}
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        r = _triage("--rules", str(p), "-")
        err = r.stderr.decode()
        assert r.returncode == 2, (name, err)
        assert "Traceback" not in err and name in err and err.count("\n") == 1, (name, err)
    r = _triage("--rules", str(tmp_path), "-")
    assert r.returncode == 2 and b"is a folder" in r.stderr


def test_data_convert_names_the_gbk_line_it_repaired(tmp_path):
    f = tmp_path / "alpaca.jsonl"
    f.write_bytes('{"instruction": "问", "input": "", "output": "答"}\n'.encode()
                  + '{"instruction": "发热怎么办", "input": "", "output": "多喝水"}\n'.encode("gbk"))
    r = subprocess.run([sys.executable, "-m", "ming", "data", "convert", "--from", "alpaca", str(f),
                        str(tmp_path / "out.jsonl")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"warning: {f}:2: not UTF-8; decoded as GB18030/GBK" in r.stderr
    assert "converted 2 records" in r.stdout
