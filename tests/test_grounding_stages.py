"""Issue 17's stages in the turn pipeline (issue 14): what they report, retrieval's passages and source line,
the registry. The grounding policy itself (never shown, regenerate once, fall back, hold back one sentence)
is tested through the pipeline in tests/test_grounding.py."""

from pathlib import Path

from ming import respond
from ming.engine.base import GenerationConfig
from ming.retrieve import RetrievalStage, load_index
from ming.safety.grounding_stage import GroundingStage, MedicationStage

FIX = Path(__file__).resolve().parent / "fixtures" / "grounding"
REPORT = "血常规：白细胞 13.5×10^9/L，中性粒细胞 85%，血红蛋白 118 g/L（女），C反应蛋白 42 mg/L。这是什么情况？"


def run(pipe, text):
    turn = pipe.prepare([{"role": "user", "content": text}], GenerationConfig(max_new_tokens=24, temperature=0))
    return turn, pipe.answer(turn)


def test_grounding_and_medication_stages_report_in_meta(tiny_qwen_engine):
    from ming.safety.stage import SafetyStage
    from ming.stages import load_safety

    pipe = respond.Pipeline(tiny_qwen_engine, [SafetyStage(load_safety("on")), GroundingStage(), MedicationStage()])
    turn, res = run(pipe, REPORT)
    g = res.meta["grounding"]
    assert g["checked"] and isinstance(g["violations"], list)
    assert "| 中性粒细胞百分比（中性粒细胞） | 85 % |" in res.text  # the table the explanation is held to
    if g["violations"]:  # whatever the random model said that contradicts the table is not shown
        assert "（以下解释由 ming 根据检验结果整理）" in res.text
    assert "rx_drugs" in res.meta["medication"]
    # no report: the grounding stage does not check, the medication stage still runs
    turn, res = run(pipe, "头疼怎么办")
    assert "grounding" not in res.meta and "medication" in res.meta


def test_retrieval_stage_adds_passages_and_the_source_line(tiny_qwen_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    idx = load_index(sources=[("kg", FIX / "kg")], log=lambda m: None)
    idx.min_score = 2.0
    pipe = respond.Pipeline(tiny_qwen_engine, [RetrievalStage(k=1, index=idx)])
    turn, res = run(pipe, "右下腹疼痛伴发热，是不是阑尾炎？")
    assert res.meta["retrieval"]["sources"] == ["知识库·急性阑尾炎"]
    assert any("急性阑尾炎" in c for c in turn.context)
    assert res.text.endswith("参考：知识库·急性阑尾炎")


def test_registry_runs_grounding_and_medication_with_safety_and_retrieval_on_request(tmp_path, monkeypatch):
    from ming.stages import StageOptions, build

    assert [s.name for s in build(StageOptions(safety="on"))] == ["safety", "consult", "grounding", "medication"]
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    idx = load_index(sources=[("kg", FIX / "kg")], log=lambda m: None)
    names = [s.name for s in build(StageOptions(safety="on", settings={"retrieval": {"k": 1, "index": idx}}))]
    assert names == ["safety", "consult", "retrieval", "grounding", "medication"]
    assert "retrieval" not in [s.name for s in build(StageOptions(mode="consult", settings={"retrieval": {"index": idx}}))]
