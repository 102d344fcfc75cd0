"""The turn pipeline (ming/respond.py) on the real tiny Qwen2 model and the real Qwen tokenizer: stages
run in order, fitting counts everything rendered, a pasted report is shortened keeping its abnormal
items, errors name the limits, finish reasons are normalised once, safety off is one thing."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from ming.engine.base import Chunk, GenerationConfig
from ming.errors import MingError
from ming.prompts import QA
from ming.respond import (Added, ContextTooLong, Pipeline, PostCheck, Regenerate, Stage, finish_reason,
                          is_acknowledgement)
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


# ---- regeneration (issue 17): a post-check may ask for one more model run with a hint ---------------------------
HINT = "【更正】测试提示：上一句与检验结果不符"


class Flag(Stage):
    """Asks to regenerate on the first sentence of the first `bad_runs` model runs; the sentences it lets
    through are shown; after a refused regeneration it adds a fallback line."""

    name = "flag"

    def __init__(self, bad_runs):
        self.bad_runs, self.seen = bad_runs, []

    def post_check(self, turn):
        stage = self

        class Check(PostCheck):
            run, failed, fresh = 1, False, True

            def sentence(self, text, shown):
                stage.seen.append((self.run, text))
                if self.fresh and self.run <= stage.bad_runs:
                    self.fresh, self.failed = False, True
                    return Regenerate(HINT)
                self.fresh = False
                return text

            def regenerating(self, hint):
                assert hint == HINT
                self.run, self.failed, self.fresh = self.run + 1, False, True

            def finish(self, shown):
                return "〔兜底〕" if self.failed else ""

        return Check()


@pytest.fixture
def runs(tiny_qwen_engine, monkeypatch):
    """Every model run of the real tiny engine: (prompt ids, its chunks)."""
    log, real = [], tiny_qwen_engine.stream

    def stream(prompt_ids, gen, cancel=None):
        chunks = []
        log.append((list(prompt_ids), gen, chunks))
        for ch in real(prompt_ids, gen, cancel):
            chunks.append(ch)
            yield ch

    monkeypatch.setattr(tiny_qwen_engine, "stream", stream)
    return log


def _usage(chunks):
    last = [c for c in chunks if c.finish_reason][-1]
    return last.prompt_tokens, last.completion_tokens, last.finish_reason


def test_a_flagged_sentence_is_regenerated_once_with_the_hint_in_the_prompt(tiny_qwen_engine, runs):
    q = [{"role": "user", "content": "头痛怎么办"}]
    flag = Flag(bad_runs=1)
    pipe = Pipeline(tiny_qwen_engine, [flag])
    turn = pipe.prepare(q, GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3))
    events = list(pipe.stream(turn))
    r = events[-1].result
    assert len(runs) == 2 and r.attempts == 2
    first = [t for n, t in flag.seen if n == 1]
    assert first and all(t not in r.text for t in first)  # the flagged text was never shown
    shown = "".join(ev.text for ev in events if ev.kind == "text")
    assert shown == r.model_text == "".join(t for n, t in flag.seen if n == 2)  # the second run is shown
    assert HINT not in tiny_qwen_engine.tokenizer.decode(runs[0][0])
    second = tiny_qwen_engine.tokenizer.decode(runs[1][0])
    assert HINT in second and second.index(HINT) < second.index("头痛怎么办")  # in the system text
    assert "〔兜底〕" not in r.text
    (p1, c1, _), (p2, c2, f2) = _usage(runs[0][2]), _usage(runs[1][2])
    assert (r.prompt_tokens, r.completion_tokens) == (p1 + p2, c1 + c2)  # both runs are counted
    assert r.finish == finish_reason(f2) and r.finish in ("stop", "length")


def test_a_second_flag_falls_back_without_a_third_run(tiny_qwen_engine, runs):
    flag = Flag(bad_runs=5)
    pipe = Pipeline(tiny_qwen_engine, [flag])
    r = pipe.answer(pipe.prepare([{"role": "user", "content": "头痛怎么办"}],
                                 GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3)))
    assert len(runs) == 2 and r.attempts == 2  # regenerated once, not again
    assert r.text == "〔兜底〕"  # nothing flagged got out; the fallback did
    assert all(t not in r.text for _, t in flag.seen)
    assert r.finish in ("stop", "length") and r.completion_tokens == _usage(runs[0][2])[1] + _usage(runs[1][2])[1]


def test_the_regeneration_prompt_is_fitted_and_continues_the_shown_text(tiny_qwen_engine):
    pipe = Pipeline(tiny_qwen_engine, [Recorder("a", [])])
    turn = pipe.prepare([{"role": "user", "content": "头痛怎么办"}], GenerationConfig(max_new_tokens=40))
    hint, (ids, gen) = pipe._regeneration(turn, HINT, "白细胞升高。")
    prefix = tiny_qwen_engine.template.encode_text("白细胞升高。")
    system = turn.messages[0]["content"] + "\n\n" + HINT  # the stages' text, then the hint
    msgs = [{"role": "system", "content": system}] + turn.messages[1:]
    assert hint == HINT and ids == list(tiny_qwen_engine.render(msgs).ids) + prefix
    assert gen.max_new_tokens == 40 - len(prefix)  # the answer room is shared with the shown text
    assert gen.seed == turn.gen.seed  # unseeded stays unseeded
    ctx = len(turn.prompt_ids) + 60
    with window(tiny_qwen_engine, ctx):
        turn = pipe.prepare([{"role": "user", "content": "头痛怎么办"}], GenerationConfig(max_new_tokens=40, seed=7))
        _, (ids, gen) = pipe._regeneration(turn, HINT, "白细胞升高。")
        assert gen.max_new_tokens == min(40 - len(prefix), ctx - len(ids)) and gen.seed == 8
    with window(tiny_qwen_engine, len(turn.prompt_ids) + 3):  # no room left after the hint: no regeneration
        turn = pipe.prepare([{"role": "user", "content": "头痛怎么办"}], GenerationConfig(max_new_tokens=3))
        assert pipe._regeneration(turn, HINT, "白细胞升高。") is None


def test_answers_without_a_flag_run_the_model_once(tiny_qwen_engine, runs):
    q = [{"role": "user", "content": "头痛怎么办"}]
    gen = GenerationConfig(max_new_tokens=12, temperature=0)
    plain = Pipeline(tiny_qwen_engine, mode=None)
    a = plain.answer(plain.prepare(q, gen))
    pipe = Pipeline(tiny_qwen_engine, [Flag(bad_runs=0)], mode=None)
    b = pipe.answer(pipe.prepare(q, gen))
    assert len(runs) == 2 and b.attempts == a.attempts == 1  # one run each
    assert (b.model_text, b.completion_tokens, b.finish) == (a.model_text, a.completion_tokens, a.finish)


@pytest.mark.parametrize("text, ack", [
    ("好的，我明白了。", True), ("明白了。", True), ("我明白了！", True), ("收到。", True), ("嗯。", True),
    ("抱歉，我之前说错了。", True), ("不好意思，刚才的说法有误。", True), ("对不起，我会重新回答。", True),
    ("好的，下面分析您的报告：", False), ("好的，您的血红蛋白偏低。", False), ("是的。", False),
    ("我会按时吃药。", False), ("血红蛋白 98 g/L，偏低。", False)])
def test_what_counts_as_an_acknowledgement(text, ack):
    assert is_acknowledgement(text) is ack


def _opening(engine, monkeypatch, opening, runs_with_it):
    """The real tiny engine's runs, the ones numbered in `runs_with_it` starting with `opening` (what a
    chat model writes on seeing new system text)."""
    real, n = engine.stream, [0]

    def stream(prompt_ids, gen, cancel=None):
        n[0] += 1
        if n[0] in runs_with_it:
            yield Chunk(text=opening)
        yield from real(prompt_ids, gen, cancel)

    monkeypatch.setattr(engine, "stream", stream)


def test_a_regenerated_run_does_not_open_by_acknowledging_the_hint(tiny_qwen_engine, monkeypatch):
    q = [{"role": "user", "content": "头痛怎么办"}]
    gen = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=3)
    pipe = Pipeline(tiny_qwen_engine, [Flag(bad_runs=1)])
    plain = pipe.answer(pipe.prepare(q, gen))
    _opening(tiny_qwen_engine, monkeypatch, "好的，我明白了。\n", {2})
    flag = Flag(bad_runs=1)
    pipe = Pipeline(tiny_qwen_engine, [flag])
    r = pipe.answer(pipe.prepare(q, gen))
    assert r.attempts == 2 and "明白" not in r.text
    assert r.text == plain.text  # the same answer as without the opening line
    assert all("明白" not in t for _, t in flag.seen)  # the checks never saw it either


def test_an_acknowledgement_that_is_the_whole_answer_is_still_shown(tiny_qwen_engine, monkeypatch):
    real = tiny_qwen_engine.stream

    def only_ack(prompt_ids, gen, cancel=None):
        last = None
        for ch in real(prompt_ids, gen, cancel):
            last = ch
        yield Chunk(text="好的。")
        yield Chunk(finish_reason="stop", prompt_tokens=last.prompt_tokens, completion_tokens=2)

    monkeypatch.setattr(tiny_qwen_engine, "stream", only_ack)
    pipe = Pipeline(tiny_qwen_engine, [Flag(bad_runs=0)])
    r = pipe.answer(pipe.prepare([{"role": "user", "content": "谢谢医生"}], GREEDY))
    assert r.text == "好的。" and r.model_text == "好的。"
