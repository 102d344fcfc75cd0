"""Red-flag triage: the labelled eval set, the brief's examples, negation/scope, context, CLI."""

import json
from pathlib import Path

import pytest

from ming.cli.main import main
from ming.safety.triage import Triage, default_triage, triage

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "bench" / "data" / "safety_eval.jsonl"


def _rows():
    return [json.loads(x) for x in EVAL.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_eval_set_is_big_enough_and_well_formed():
    rows = _rows()
    assert sum(r["label"] for r in rows) >= 150 and sum(1 - r["label"] for r in rows) >= 150
    assert {r["split"] for r in rows} == {"dev", "test"}
    assert any(r["context"] for r in rows if r["label"]) and any(r["context"] for r in rows if not r["label"])
    assert len({r["text"] for r in rows}) > 0.95 * len(rows)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_recall_and_fpr_targets_on_each_half(split):
    rows = [r for r in _rows() if r["split"] == split]
    pred = [triage(r["text"], r["context"]).emergency for r in rows]
    pos = [p for r, p in zip(rows, pred) if r["label"]]
    neg = [p for r, p in zip(rows, pred) if not r["label"]]
    recall, fpr = sum(pos) / len(pos), sum(neg) / len(neg)
    assert recall >= 0.95, recall
    assert fpr <= 0.05, fpr


@pytest.mark.parametrize("text, rule", [
    ("胸闷出汗", "CARD-ACS-01"),
    ("心口疼，疼得厉害，后背也疼", None),
    ("我爸说话不利索了，刚刚开始的", "NEURO-STROKE-03"),
    ("我妈突然口齿不清", "NEURO-STROKE-03"),
    ("奶奶嘴歪了", "NEURO-STROKE-02"),
    ("喘不上气", "RESP-DYSPNEA-01"),
    ("最近总是想不开", "SUICIDE-01"),
    ("不想活了", "SUICIDE-01"),
    ("吃了一瓶安眠药", "TOX-OVERDOSE-01"),
    ("孩子突然抽搐", "NEURO-SEIZURE-01"),
    ("3个月宝宝发烧39度", "PED-FEVER-01"),
    ("怀孕出血了", "OB-BLEED-01"),
    ("肚子疼得硬邦邦的", "ABD-SEVERE-01"),
    ("吃了虾喉咙发紧，喘不过气", "ALLERGY-ANAPH-01"),
    ("血糖2.4，手抖出汗", "VITAL-GLU-01"),
    ("血氧86", "VITAL-SPO2-01"),
])
def test_brief_examples_trigger(text, rule):
    res = triage(text)
    assert res.emergency, text
    if rule:
        assert rule in res.rule_ids
    assert "120" in res.escalation and res.rule_ids[0] in res.escalation


@pytest.mark.parametrize("text", [
    "没有胸痛", "胸口不疼，就是胃胀", "否认胸闷胸痛，否认出汗", "心梗有哪些症状", "中风的前兆是什么",
    "如果有人胸痛出汗该怎么办", "去年胸痛出汗住过院，现在饮食要注意什么", "眼皮抽搐", "腿抽筋了",
    "牙疼得想死", "累死了", "跑完步喘不上气正常吗", "孩子两岁说话不利索", "孕期牙龈出血", "宝宝8个月发烧38.5度",
    "我爸脑梗后遗症，说话不利索，怎么康复",
])
def test_routine_and_negated_do_not_trigger(text):
    assert not triage(text).emergency, triage(text).rule_ids


def test_context_window_combines_messages_and_ages_out():
    assert triage("现在一直出冷汗", ["胸口疼了好一会儿"]).emergency
    assert not triage("现在一直出冷汗").emergency
    assert triage("刚量38.2度", ["宝宝才两个月"]).emergency
    t = default_triage()
    old = ["胸口疼"] + ["今天天气不错"] * t.context_window
    assert not triage("出了好多汗", old).emergency  # chest pain fell out of the window


def test_check_messages_uses_user_turns_only():
    t = default_triage()
    msgs = [{"role": "system", "content": "胸痛出汗"}, {"role": "assistant", "content": "胸口疼、出冷汗吗？"},
            {"role": "user", "content": "没有，就是有点咳嗽"}]
    assert not t.check_messages(msgs).emergency


def test_rules_have_ids_rationales_and_escalations():
    t = default_triage()
    ids = [r.id for r in t.rules]
    assert len(ids) == len(set(ids)) >= 30
    assert all(r.rationale and r.category in t.escalations for r in t.rules)


def test_bad_rule_file_is_a_clear_error(tmp_path):
    from ming.errors import MingError

    p = tmp_path / "r.yaml"
    p.write_text("concepts: {a: ['x']}\nrules: [{id: X, category: c, rationale: r, any: [b]}]\n", encoding="utf-8")
    with pytest.raises(MingError, match="invalid|unknown concept"):
        Triage.from_file(p)


def test_cli_triage_lines_jsonl_and_bad_rows(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text("我爸胸口疼，出了一身冷汗\n心梗有哪些症状\n"
                 '{"id": "a", "text": "现在烧到38.5", "context": ["宝宝才2个月"]}\n{broken\n', encoding="utf-8")
    rc = main(["triage", str(f)])
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 1  # one bad row, reported
    assert out[0]["emergency"] and out[0]["rule_ids"] == ["CARD-ACS-01"] and "120" in out[0]["escalation"]
    assert out[1] == {"emergency": False, "rule_ids": [], "categories": [], "escalation": ""}
    assert out[2]["id"] == "a" and out[2]["rule_ids"] == ["PED-FEVER-01"]
    assert out[3]["line"] == 4 and "error" in out[3]


def test_cli_triage_conversation_mode(tmp_path, capsys):
    f = tmp_path / "conv.txt"
    f.write_text("我怀孕六周\n今天下午开始流血了\n", encoding="utf-8")
    assert main(["triage", "--conversation", "--no-escalation", str(f)]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["emergency"] for o in out] == [False, True]
