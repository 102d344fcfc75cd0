"""`ming chat` with input a careless user gives it: bytes that are not UTF-8, /save to a folder, under a
file, over an existing file. Each is one `[ming]` line; the conversation is kept. A real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_bad_lines_and_failed_saves_keep_the_session(tiny_qwen_dir, tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("keep me", encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    good = tmp_path / "chat.json"
    script = (f"第一个问题\n".encode() + b"\xff\xfe\n" + "第二个问题\n".encode()
              + f"/save {tmp_path}\n/save {blocker}/under.json\n/save {existing}\n/save {good}\n".encode())
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "ming", "chat", "--model-path", str(tiny_qwen_dir), "--plain",
                        "--safety", "off", "--max-new-token", "2", "--temperature", "0"], input=script,
                       capture_output=True, env=env, timeout=300)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0 and "Traceback" not in err, err
    lines = err.splitlines()
    assert any("not UTF-8" in x for x in lines), err
    assert any(str(tmp_path) in x and "folder" in x for x in lines), err
    assert any("under.json" in x and "cannot save" in x for x in lines), err
    assert any("old.json" in x and "exists" in x for x in lines), err
    assert existing.read_text(encoding="utf-8") == "keep me"  # never overwritten without being asked
    saved = json.loads(good.read_text(encoding="utf-8"))
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["第一个问题", "第二个问题"]


def test_save_overwrites_when_asked(tiny_qwen_dir, tmp_path):
    existing = tmp_path / "old.json"
    existing.write_text("old", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "ming", "chat", "--model-path", str(tiny_qwen_dir), "--plain",
                        "--safety", "off", "--max-new-token", "2"], input=f"问题\n/save! {existing}\n".encode(),
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(existing.read_text(encoding="utf-8"))["messages"][-2]["content"] == "问题"
