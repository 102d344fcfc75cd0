"""The LLM judge: versioned rubric, score parsing, bounded retries, parse failures counted."""

from fixtures.eval.fakes import FIXTURES, ScriptedClient
from ming.engine.base import GenerationConfig
from ming.eval.judge import RUBRIC_VERSION, Judge, parse_score
from ming.eval.runner import EvalOptions, Runner


def test_parse_score():
    assert parse_score('{"score": 4, "reason": "基本准确"}') == 4
    assert parse_score("评分：2") == 2
    assert parse_score("5") == 5
    assert parse_score('{"score": 7}') is None
    assert parse_score("这个回答还不错") is None


def test_retries_then_parse_failure_is_counted():
    replies = iter(["不错", '{"score": 3, "reason": "x"}', "好", "很好", "非常好"])
    j = Judge(ScriptedClient(lambda m: next(replies)), GenerationConfig(max_new_tokens=32, seed=0), retries=2)
    v = j.score("问题", "回答", "参考")
    assert v.score == 3 and v.attempts == 2 and j.parse_failures == 0
    v = j.score("问题", "回答")
    assert v.score is None and v.attempts == 3 and j.parse_failures == 1


def test_judge_in_a_qa_run(tmp_path):
    model = ScriptedClient(lambda m: "多喝水，注意休息。")
    verdicts = iter(['{"score": 4}', "无法评分", "无法评分"])
    judge = Judge(ScriptedClient(lambda m: next(verdicts)), GenerationConfig(max_new_tokens=32, seed=0), retries=1)
    rep = Runner(model, EvalOptions(tasks=["toyhom_qa"], output=str(tmp_path / "j"), progress=False,
                                    data=str(FIXTURES / "qa_small.jsonl")), judge=judge, log=lambda m: None).run()
    t = rep["tasks"]["toyhom_qa"]
    assert t["judge_score"]["n"] == 1 and t["judge_score"]["mean"] == 4 and t["judge_parse_failures"] == 1
    assert rep["judge"]["rubric_version"] == RUBRIC_VERSION
