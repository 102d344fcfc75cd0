"""Simulated-patient consultation: case building from the data schemas, the rule-based patient
revealing findings only when asked, the LLM patient's JSON protocol with parse-failure fallback,
the consultation loop and its scores."""

import json

import pytest

from fixtures.eval.fakes import FIXTURES, ScriptedClient, doctor_script
from ming.engine.base import GenerationConfig
from ming.eval import simpatient as sp
from ming.eval.runner import EvalOptions, Runner


def _rows(name):
    return [json.loads(line) for line in open(FIXTURES / name, encoding="utf-8")]


def test_case_from_haodf_form_hides_findings_and_never_uses_the_disease_line():
    c1, c2 = (sp.case_from_haodf(r) for r in _rows("dialogue_cases.jsonl"))
    assert c1.chief_complaint == "手背起红疹三天，很痒"
    texts = [f.text for f in c1.findings]
    assert "晚上更厉害" in texts and "抓破后有渗液" in texts
    assert {f.category for f in c1.findings} >= {"duration", "medication", "allergy"}
    assert not any("湿疹" in t for t in texts + [c1.chief_complaint])  # the 疾病 line would leak it
    assert c1.diagnosis == "湿疹"
    # later patient statements of a real dialogue are findings; thanks and questions are not
    t2 = [f.text for f in c2.findings]
    assert "有黄痰" in t2 and not any("谢谢" in t for t in t2)
    assert c2.diagnosis == "肺部感染"


def test_case_from_cmb_clin():
    c = sp.case_from_cmb_clin(_rows("cmb_clin_case.jsonl")[0])
    assert c.chief_complaint.startswith("右下腹痛并自扪及包块3小时")
    cats = {f.category for f in c.findings}
    assert {"exam_physical", "exam_lab"} <= cats
    assert c.diagnosis == "嵌顿性腹股沟斜疝合并肠梗阻"


def test_rule_patient_reveals_only_what_is_asked():
    case = sp.case_from_haodf(_rows("dialogue_cases.jsonl")[0])
    p = sp.RulePatient(case)
    reply, ids = p.reply([], "你好，今天天气不错。")
    assert ids == [] and reply == "好的。"
    reply, ids = p.reply([], "你平时喜欢运动吗？")
    assert ids == [] and "不太清楚" in reply
    reply, ids = p.reply([], "持续多久了？")
    assert "一周内" in reply and all(case.findings[i - 1].category == "duration" or "三天" in case.findings[i - 1].text
                                    for i in ids)
    reply, ids = p.reply([], "有没有药物过敏？")
    assert "青霉素" in reply
    reply, ids = p.reply([], "晚上会更厉害吗？")  # shared bigram 晚上 / 厉害
    assert "晚上更厉害" in reply
    assert 0 < len(p.revealed) < len(case.findings)


def test_diagnosis_hit():
    assert sp.diagnosis_hit("诊断：湿疹。建议外用药。", "湿疹") == (True, "湿疹")
    assert sp.diagnosis_hit("诊断：急性湿疹", "荨麻疹，湿疹")[0] is True
    assert sp.diagnosis_hit("考虑为腹股沟斜疝嵌顿", "嵌顿性腹股沟斜疝合并肠梗阻")[0] is True  # bigram recall
    assert sp.diagnosis_hit("诊断：感冒", "肺部感染")[0] is False
    assert sp.diagnosis_hit("诊断：肺部有感染", "肺部感染")[0] is True
    assert sp.diagnosis_hit("任何话", None) == (None, None)


def test_concluded_needs_a_statement_without_a_question():
    assert sp.concluded("诊断：湿疹。建议外用药。")
    assert not sp.concluded("考虑是湿疹，请问用过什么药吗？")
    assert not sp.concluded("持续多久了？")


def test_consultation_loop_with_scripted_doctor():
    case = sp.case_from_haodf(_rows("dialogue_cases.jsonl")[0])
    doctor = ScriptedClient(doctor_script)
    res = sp.consult(doctor, sp.RulePatient(case), case, GenerationConfig(max_new_tokens=32), max_turns=4,
                     system="你是医生")
    roles = [t["role"] for t in res.transcript]
    assert roles == ["patient", "doctor", "patient", "doctor", "patient", "doctor"]
    assert res.turns == 3 and res.concluded_early and res.diagnosis_hit is True
    assert res.coverage == pytest.approx(len(res.revealed) / len(case.findings)) and res.coverage > 0
    # the doctor saw a system prompt and alternating turns starting with the patient
    assert [m["role"] for m in doctor.seen[-1]] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_turn_limit_forces_the_diagnosis_question():
    case = sp.case_from_haodf(_rows("dialogue_cases.jsonl")[0])
    asker = ScriptedClient(lambda m: "还有别的症状吗？")
    res = sp.consult(asker, sp.RulePatient(case), case, GenerationConfig(max_new_tokens=8), max_turns=3)
    assert res.turns == 3 and not res.concluded_early
    assert sp.FINAL_QUESTION in res.transcript[-2]["text"]
    assert res.diagnosis_hit is False


def test_llm_patient_json_protocol_and_fallback():
    case = sp.case_from_haodf(_rows("dialogue_cases.jsonl")[0])
    answers = iter(['{"reply": "一周内开始的", "revealed": [99, 4]}', "我不想用 JSON", "还是不是", "也不是"])
    pc = ScriptedClient(lambda m: next(answers))
    p = sp.LLMPatient(case, pc, GenerationConfig(max_new_tokens=32, seed=1), retries=2)
    reply, ids = p.reply([{"role": "patient", "text": p.opening()}], "多久了？")
    assert reply == "一周内开始的" and ids == [4]  # out-of-range ids are dropped
    assert "只输出一行 JSON" in pc.seen[0][0]["content"] and pc.seen[0][-1] == {"role": "user", "content": "多久了？"}
    reply, ids = p.reply([], "有没有药物过敏？")  # three bad replies: counted, rule-based answer used
    assert p.parse_failures == 3 and p.fallbacks == 1 and "青霉素" in reply


def test_runner_consult_task(tmp_path):
    opts = EvalOptions(tasks=["meddialog_cn_100"], output=str(tmp_path / "c"), data=str(FIXTURES / "dialogue_cases.jsonl"),
                       progress=False, max_turns=4)
    rep = Runner(ScriptedClient(doctor_script), opts, log=lambda m: None).run()
    t = rep["tasks"]["meddialog_cn_100"]
    assert t["n_done"] == 2 and t["n_with_diagnosis"] == 2
    assert t["diagnosis_accuracy"]["accuracy"] == 1.0 and t["turns"]["mean"] == 3.0
    assert 0 < t["coverage"]["mean"] < 1
    md = (tmp_path / "c" / "report.md").read_text(encoding="utf-8")
    assert "| meddialog_cn_100 | 2 | 2 | 100.0" in md


def test_advice_without_a_question_reveals_nothing():
    case = sp.case_from_haodf(_rows("dialogue_cases.jsonl")[0])
    p = sp.RulePatient(case)
    reply, ids = p.reply([], "建议您持续观察，可以用药治疗，注意过敏。")  # keywords, but no question
    assert ids == [] and reply == "好的。"
    reply, ids = p.reply([], "建议您就医。请问持续多久了？")
    assert ids and "一周内" in reply
