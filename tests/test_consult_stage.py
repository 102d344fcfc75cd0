"""The controller as a stage of the turn pipeline (issue 14). Skipped until `ming.respond.Pipeline`
exists on the branch; checked against the pipeline branch before delivery."""

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

