"""Session: commands, history, truncation to the context window by tokens (fitting itself: test_respond.py)."""

import json

import pytest

from ming.engine.base import GenerationConfig
from ming.respond import Pipeline
from ming.session import Session, parse_command


@pytest.mark.parametrize("line,name", [
    ("new chat", "reset"), ("  New Chat ", "reset"), ("/reset", "reset"), ("/exit", "exit"), ("/quit", "exit"),
    ("/undo", "undo"), ("/help", "help"), ("/save out.json", "save"), ("/frobnicate", "unknown"),
])
def test_commands(line, name):
    assert parse_command(line).name == name


@pytest.mark.parametrize("line", ["我想开始 new chat 可以吗", "new chat please", "头痛怎么办", "what is new chat?"])
def test_questions_are_not_commands(line):
    assert parse_command(line) is None


def test_session_truncates_undoes_resets_and_saves(tiny_qwen_engine, tmp_path):
    e = tiny_qwen_engine
    s = Session(Pipeline(e, system="系统"), GenerationConfig(max_new_tokens=4, temperature=0))
    for q in ["第一个问题", "第二个问题", "第三个问题"]:
        events = list(s.ask(q))
        assert events[-1].kind == "done"
    assert [m["role"] for m in s.history] == ["user", "assistant"] * 3
    assert s.undo() and len(s.history) == 4
    saved = json.loads(s.save(tmp_path / "t.json").read_text())
    assert saved["messages"][0]["content"] == "第一个问题"
    # shrink the context so only the newest exchanges fit
    old = e.context_length
    try:
        need = len(e.render([{"role": "system", "content": "系统"}] + s.history
                            + [{"role": "user", "content": "第四个问题" * 3}]).ids)
        e.context_length = need - 20 + s.gen.max_new_tokens
        list(s.ask("第四个问题" * 3))
        assert s.last_dropped >= 1
        assert s.history[-2]["content"] == "第四个问题" * 3
        assert s.history[0]["content"] != "第一个问题"
        assert [k for k, _ in s.notices()] == ["dropped"] and s.notices() == []  # said once per conversation
    finally:
        e.context_length = old
    s.reset()
    assert s.history == []
