"""Session: commands, history, truncation to the context window by tokens."""

import json

import pytest

from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.session import Session, fit_to_context, parse_command
from ming.templates import Template


@pytest.mark.parametrize("line,name", [
    ("new chat", "reset"), ("  New Chat ", "reset"), ("/reset", "reset"), ("/exit", "exit"), ("/quit", "exit"),
    ("/undo", "undo"), ("/help", "help"), ("/save out.json", "save"), ("/frobnicate", "unknown"),
])
def test_commands(line, name):
    assert parse_command(line).name == name


@pytest.mark.parametrize("line", ["我想开始 new chat 可以吗", "new chat please", "头痛怎么办", "what is new chat?"])
def test_questions_are_not_commands(line):
    assert parse_command(line) is None


def _conv(n):
    msgs = [{"role": "system", "content": "系统提示"}]
    for i in range(n):
        msgs += [{"role": "user", "content": f"问题{i} " + "很长的描述" * 10},
                 {"role": "assistant", "content": f"回答{i} " + "详细的回答" * 10}]
    return msgs + [{"role": "user", "content": "最新的问题"}]


def test_fit_to_context_drops_oldest_exchanges(qwen_tokenizer):
    t = Template("qwen", qwen_tokenizer)
    conv = _conv(6)
    full = len(t.render(conv, True).ids)
    kept, dropped, n = fit_to_context(t, conv, budget=full - 1)
    assert dropped == 1 and n <= full - 1
    assert kept[0]["role"] == "system" and kept[-1]["content"] == "最新的问题"
    assert kept[1]["content"].startswith("问题1")  # the oldest exchange went first
    kept, dropped, n = fit_to_context(t, conv, budget=full)
    assert dropped == 0 and n == full
    with pytest.raises(MingError, match="tokens"):
        fit_to_context(t, conv, budget=10)


def test_session_truncates_undoes_resets_and_saves(tiny_qwen_engine, tmp_path):
    e = tiny_qwen_engine
    s = Session(e, GenerationConfig(max_new_tokens=4, temperature=0), system="系统")
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
        need = len(e.render(s.messages("第四个问题" * 3)).ids)
        e.context_length = need - 20 + s.gen.max_new_tokens
        list(s.ask("第四个问题" * 3))
        assert s.last_dropped >= 1
        assert s.history[-2]["content"] == "第四个问题" * 3
        assert s.history[0]["content"] != "第一个问题"
    finally:
        e.context_length = old
    s.reset()
    assert s.history == []
