"""The controller as a stage of the turn pipeline (issue 14), and as the "consult" entry of
`ming.stages.REGISTRY`: it acts on consult-mode turns only, loads the KB lazily (building a missing
index first) and, with no KB source at all, leaves consult turns to the plain model with one warning."""

import shutil
from pathlib import Path

import pytest

from ming import respond
from ming.consult.stage import ConsultStage, why_text
from ming.engine.base import GenerationConfig
from ming.kb import load_kb

if not hasattr(respond, "Pipeline"):
    pytest.skip("the turn pipeline (issue 14) is not on this branch yet", allow_module_level=True)

TINY = Path(__file__).parent / "fixtures" / "kb_tiny"


@pytest.fixture()
def kb(tmp_path, monkeypatch):
    shutil.copytree(TINY, tmp_path / "k")
    monkeypatch.setenv("MING_HOME", str(tmp_path / "h"))
    return load_kb(tmp_path / "k", log=lambda m: None)


def run(pipe, msgs):
    turn = pipe.prepare(msgs, GenerationConfig(max_new_tokens=40, temperature=0))
    return turn, pipe.answer(turn)


def test_consult_stage_in_the_pipeline(tiny_qwen_engine, kb):
    from ming.safety.stage import SafetyStage
    from ming.stages import load_safety

    for mode in ("none", "questions"):
        pipe = respond.Pipeline(tiny_qwen_engine, [SafetyStage(load_safety("on")), ConsultStage(kb, phrase=mode)], mode="consult")
        msgs = [{"role": "user", "content": "我肚子疼两天了"}]
        turn, res = run(pipe, msgs)
        meta = res.meta["consult"]
        assert meta["kind"] == "ask"
        # the tiny random model cannot phrase a question: the template is shown and stored
        assert res.text == meta["text"] and res.model_text == meta["text"], (mode, res.text)
        msgs += [{"role": "assistant", "content": res.model_text}, {"role": "user", "content": "在右下腹，按着更疼，有点发烧"}]
        turn, res = run(pipe, msgs)
        assert res.meta["consult"]["kind"] == "escalate" and "阑尾炎" in res.text
        assert "下一步：escalate" in why_text(res.meta["consult"])
    # answer_then_ask: the model's words stream, the controller's question follows
    pipe = respond.Pipeline(tiny_qwen_engine, [ConsultStage(kb)], mode="consult")
    msgs = [{"role": "user", "content": "拉肚子两天了"}, {"role": "assistant", "content": "请问有没有恶心？"},
            {"role": "user", "content": "要不要吃点药？"}]
    turn, res = run(pipe, msgs)
    meta = res.meta["consult"]
    assert meta["kind"] == "answer_then_ask" and res.text.endswith(meta["question"]["text"])
    assert "consult" in turn.system_text



def test_registered_stage_acts_on_consult_turns_only_and_loads_lazily(tiny_qwen_engine, tmp_path, monkeypatch, capfd):
    from ming.stages import StageOptions, build

    monkeypatch.setenv("MING_HOME", str(tmp_path / "h"))  # no index yet: the first consult turn builds it
    stages = build(StageOptions(safety="on", mode="qa"))
    assert [s.name for s in stages][:2] == ["safety", "consult"]  # right after the safety check
    stage = stages[1]
    pipe = respond.Pipeline(tiny_qwen_engine, stages, mode="qa")  # a server started in qa mode
    turn, res = run(pipe, [{"role": "user", "content": "我肚子疼两天了"}])
    assert turn.mode == "qa" and "consult" not in res.meta and stage._kb is None  # qa: nothing loaded
    assert not list((tmp_path / "h").glob("kb/*.pkl"))
    # … a request with "mode": "consult" gets the controller; the index is built on the way, said on stderr
    turn = pipe.prepare([{"role": "user", "content": "我肚子疼两天了"}],
                        GenerationConfig(max_new_tokens=40, temperature=0), mode="consult")
    res = pipe.answer(turn)
    assert turn.mode == "consult" and res.meta["consult"]["kind"] == "ask" and res.text == res.meta["consult"]["text"]
    assert "building the index" in capfd.readouterr().err and list((tmp_path / "h").glob("kb/*.pkl"))
    # off for this caller: no stage at all; a caller in consult mode loads the KB at once
    assert "consult" not in [s.name for s in build(StageOptions(safety="on", off=frozenset({"consult"})))]
    assert build(StageOptions(safety="off", mode="consult"))[0]._kb is not None


def test_no_kb_source_falls_back_to_the_plain_model_with_one_warning(tiny_qwen_engine, tmp_path, monkeypatch, capfd):
    from ming.stages import StageOptions, build

    monkeypatch.setenv("MING_KB", str(tmp_path / "nowhere"))
    stages = build(StageOptions(safety="off", mode="consult"))  # never raises
    err = capfd.readouterr().err
    assert err.count("consult mode without a knowledge base") == 1 and "nowhere" in err
    pipe = respond.Pipeline(tiny_qwen_engine, stages, mode="consult")
    msgs = [{"role": "user", "content": "我肚子疼两天了"}]
    for _ in range(2):
        turn, res = run(pipe, msgs)
        assert "consult" not in res.meta and "consult" not in turn.system_text and res.text  # the model answered
        msgs += [{"role": "assistant", "content": res.model_text}, {"role": "user", "content": "还有点恶心"}]
    assert "knowledge base" not in capfd.readouterr().err  # said once, not per turn
    from ming.session import Session

    assert "没有知识库" in Session(pipe, GenerationConfig(max_new_tokens=4)).why()  # chat's /why says why
    assert why_text(None).startswith("（还没有问诊记录") and "qa 模式" in why_text(None, mode="qa")
