"""The turn pipeline (ming/respond.py) on the real tiny Qwen2 model and the real Qwen tokenizer: stages
run in order, fitting counts everything rendered, a pasted report is shortened keeping its abnormal
items, errors name the limits, finish reasons are normalised once, safety off is one thing."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.prompts import QA
from ming.respond import Added, ContextTooLong, Pipeline, PostCheck, Stage, finish_reason
from ming.safety.report import parse_report, shorten_report
from ming.stages import REGISTRY, StageOptions, build

REPORT = (Path(__file__).parent / "fixtures" / "turn" / "report15.txt").read_text(encoding="utf-8").strip()
GREEDY = GenerationConfig(max_new_tokens=8, temperature=0)
EMERGENCY = "我胸口剧烈疼痛，出冷汗，喘不上气，已经二十分钟了"


@contextlib.contextmanager
def window(engine, n):
    old = engine.context_length
    engine.context_length = n
    try:
        yield
    finally:
        engine.context_length = old


class Recorder(Stage):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def prepare(self, turn):
        self.log.append((self.name, dict(turn.system_text)))
        turn.system_text[self.name] = f"〔{self.name}〕"
        turn.meta[self.name] = {"seen": list(turn.system_text)}
        turn.tail.append(Added(self.name, f"<{self.name}>"))


def test_stages_run_in_order_and_their_text_is_rendered(tiny_qwen_engine):
    log = []
    pipe = Pipeline(tiny_qwen_engine, [Recorder("a", log), Recorder("b", log)])
    turn = pipe.prepare([{"role": "user", "content": "头痛怎么办"}], GREEDY)
    assert [n for n, _ in log] == ["a", "b"] and log[1][1] == {"a": "〔a〕"}  # b saw what a added
    system = turn.messages[0]["content"]
    assert system.startswith(QA) and system.index("〔a〕") < system.index("〔b〕")
    assert turn.prompt_ids == list(tiny_qwen_engine.render(turn.messages).ids)  # rendered once, what is sent
    r = pipe.answer(turn)
    assert r.text.endswith("<a><b>") and r.meta == {"a": {"seen": ["a"]}, "b": {"seen": ["a", "b"]}}
    assert "<a>" not in r.model_text  # stage text is shown, not put in the model's history


def test_registry_builds_per_caller():
    assert list(REGISTRY)[0] == "safety"
    # consult is built for every caller and acts on consult-mode turns only (safety off too)
    assert [s.name for s in build(StageOptions(safety="on"))] == ["safety", "consult", "grounding", "medication"]
    assert [s.name for s in build(StageOptions(safety="on", off=frozenset({"grounding"})))] == ["safety", "consult",
                                                                                                "medication"]
    assert [s.name for s in build(StageOptions(safety="off"))] == ["consult"]
    every = frozenset({"safety", "consult", "grounding", "medication"})
    assert build(StageOptions(safety="off", off=frozenset({"consult"}))) == build(StageOptions(safety="on", off=every)) == []
    with pytest.raises(MingError, match="unknown stage"):
        build(StageOptions(off=frozenset({"nope"})))
    with pytest.raises(MingError, match="safety mode"):
        build(StageOptions(safety="loud"))


def test_report_shortening_keeps_the_abnormal_items():
    short, n = shorten_report(REPORT)
    before = {f.name: f.status for f in parse_report(REPORT)}
    after = {f.name: f.status for f in parse_report(short)}
    assert n == sum(s == "normal" for s in before.values()) == 8
    assert after == {k: s for k, s in before.items() if s != "normal"}  # every abnormal item, nothing else
    assert "请帮我解读一下这份报告" in short and "其余 8 项结果正常" in short
    assert shorten_report("头痛三天了怎么办") == ("头痛三天了怎么办", 0)


def test_fitting_counts_the_safety_text(tiny_qwen_engine):
    """The case of issue 14: the question fits, the safety layer's findings text does not — the turn
    still answers, within the window, with the abnormal findings kept."""
    e = tiny_qwen_engine
    pipe = Pipeline(e, build(StageOptions(safety="on")))
    gen = GenerationConfig(max_new_tokens=200, temperature=0)
    question_only = len(e.render([{"role": "system", "content": QA}, {"role": "user", "content": REPORT}]).ids)
    with window(e, 700):
        assert question_only + 200 <= 700  # without the safety text it would fit as it is
        turn = pipe.prepare([{"role": "user", "content": REPORT}], gen)
        assert len(turn.prompt_ids) + turn.gen.max_new_tokens <= 700
        assert turn.shortened == 8 and "shortened" in turn.notices
        system = turn.messages[0]["content"]
        for name in ("白细胞计数", "空腹血糖", "尿酸"):  # abnormal: still in what the model reads
            assert name in system
        assert "12.5" in turn.messages[-1]["content"] and "210 ×10^9/L" not in turn.messages[-1]["content"]
        r = pipe.answer(turn)
    assert r.completion_tokens >= 1 and "| 项目 |" in r.text  # the findings table is shown in full
    assert r.safety.findings and r.meta["safety"]["action"] == "answer"


def test_oldest_exchanges_go_first_then_the_answer_room_shrinks(tiny_qwen_engine):
    e = tiny_qwen_engine
    pipe = Pipeline(e, mode=None)
    hist = []
    for i in range(6):
        hist += [{"role": "user", "content": f"问题{i} " + "很长的描述" * 10},
                 {"role": "assistant", "content": f"回答{i} " + "详细的回答" * 10}]
    msgs = hist + [{"role": "user", "content": "最新的问题"}]
    full = len(e.render(msgs).ids)
    gen = GenerationConfig(max_new_tokens=8, temperature=0)
    with window(e, full + 8 - 1):
        turn = pipe.prepare(msgs, gen)
    assert turn.dropped == 1 and turn.messages[0]["content"].startswith("问题1")
    assert turn.messages[-1]["content"] == "最新的问题" and len(turn.prompt_ids) + 8 <= full + 7
    with window(e, full + 8):
        assert pipe.prepare(msgs, gen).dropped == 0
    # a nearly full window: the answer is cut (with a notice), never below the floor; the engine never
    # gets a prompt plus max_new_tokens beyond its window (both backends)
    q = [{"role": "user", "content": "最新的问题"}]
    n = len(e.render(q).ids)
    with window(e, n + 100):
        turn = pipe.prepare(q, GenerationConfig(max_new_tokens=300, temperature=0))
    assert turn.gen.max_new_tokens == 100 and turn.answer_cut and "answer_cut" in turn.notices


def test_errors_name_the_limits(tiny_qwen_engine):
    e = tiny_qwen_engine
    pipe = Pipeline(e, mode=None)
    q = [{"role": "user", "content": "头痛" * 200}]
    n = len(e.render(q).ids)
    with window(e, n + 10):
        with pytest.raises(ContextTooLong) as exc:
            pipe.prepare(q, GenerationConfig(max_new_tokens=200))
    msg = str(exc.value)
    assert f"is {n} tokens" in msg and f"context window is {n + 10} tokens" in msg and "--max-new-tokens" in msg
    assert exc.value.reserve == min(64, (n + 10) // 4) and exc.value.truncated  # the floor
    # without truncation (serve's default) a conversation that needs it is an error too
    with window(e, n + 10):
        with pytest.raises(ContextTooLong) as exc:
            pipe.prepare(q, GenerationConfig(max_new_tokens=20), truncate=False, exact_max_new=True)
    assert not exc.value.truncated and exc.value.reserve == 20


def test_finish_reasons_are_normalised_once(tiny_qwen_engine):
    assert [finish_reason(x) for x in (None, "stop", "length", "cancelled")] == ["stop", "stop", "length", "cancelled"]
    assert finish_reason("cancelled", answered=True) == "answered"
    pipe = Pipeline(tiny_qwen_engine, mode=None)
    q = [{"role": "user", "content": "头痛怎么办"}]
    gen = GenerationConfig(max_new_tokens=30, temperature=0)
    stopped = threading.Event()
    stopped.set()
    r = pipe.answer(pipe.prepare(q, gen), stopped)
    assert r.finish == "cancelled" and r.openai_finish == "stop"
    r = pipe.answer(pipe.prepare(q, gen), until=lambda text: len(text) > 0)
    assert r.finish == "answered" and r.openai_finish == "stop" and r.completion_tokens < 30
    r = pipe.answer(pipe.prepare(q, GenerationConfig(max_new_tokens=3, temperature=0)))
    assert r.finish in ("length", "stop") and r.openai_finish == r.finish


def test_safety_off_is_no_stage_and_no_decision(tiny_qwen_engine):
    q = [{"role": "user", "content": EMERGENCY}]
    off = Pipeline(tiny_qwen_engine, build(StageOptions(safety="off"))).prepare(q, GREEDY)
    assert off.safety is None and "safety" not in off.meta and not off.lead
    on = Pipeline(tiny_qwen_engine, build(StageOptions(safety="on"))).prepare(q, GREEDY)
    assert on.safety.action == "escalate" and on.meta["safety"] == on.safety.to_dict() and on.lead


def test_a_canned_reply_skips_the_model(tiny_qwen_engine):
    pipe = Pipeline(tiny_qwen_engine, build(StageOptions(safety="strict")))
    turn = pipe.prepare([{"role": "user", "content": EMERGENCY}], GREEDY)
    assert not turn.calls_model and turn.prompt_ids == []
    events = list(pipe.stream(turn))
    r = events[-1].result
    assert r.completion_tokens == 0 and "120" in r.text and {ev.stage for ev in events[:-1]} == {"safety"}


class Veto(Stage):
    """Holds back every sentence, shows a marker instead, adds a source line at the end."""

    name = "veto"

    def __init__(self):
        self.seen = []

    def post_check(self, turn):
        stage = self

        class Check(PostCheck):
            def sentence(self, text, shown):
                stage.seen.append(text)
                return "[句]"

            def finish(self, shown):
                return "\n参考：测试"

        return Check()


def test_post_checks_see_sentences_before_they_are_shown(tiny_qwen_engine):
    q = [{"role": "user", "content": "头痛怎么办"}]
    gen = GenerationConfig(max_new_tokens=24, temperature=0)
    plain = Pipeline(tiny_qwen_engine, mode=None)
    original = plain.answer(plain.prepare(q, gen)).model_text
    veto = Veto()
    pipe = Pipeline(tiny_qwen_engine, [veto], mode=None)
    events = list(pipe.stream(pipe.prepare(q, gen)))
    assert "".join(veto.seen) == original and veto.seen
    shown = [ev.text for ev in events if ev.kind == "text"]
    assert shown == ["[句]"] * len(veto.seen)  # nothing of the model's text got out unchecked
    r = events[-1].result
    assert r.text == "[句]" * len(veto.seen) + "\n参考：测试" and r.model_text == "[句]" * len(veto.seen)
