"""Medication cautions: prescription-only drugs named in an answer, and the antibiotic note for a cold."""

import json
from pathlib import Path

import pytest

from ming.safety.medication import RX_NOTE, VIRAL_NOTE, check_medication, duration_days, find_drugs, viral_context

LABELLED = Path(__file__).resolve().parent / "fixtures" / "grounding" / "medication_answers.jsonl"


def test_issue_case_amoxicillin_for_a_two_day_cough():
    m = check_medication("建议您口服阿莫西林胶囊，每次0.5克。", ["咳嗽两天了，需要吃抗生素吗？"])
    assert [d.name for d in m.rx] == ["阿莫西林"] and m.antibiotic and m.viral_context
    assert RX_NOTE in m.suffix and VIRAL_NOTE in m.suffix and m.suffix.startswith("〔用药提示〕")


@pytest.mark.parametrize("answer, drugs", [
    ("可以吃点头孢克肟和布洛芬。", ["头孢克肟"]),
    ("不建议自行服用头孢，多喝水。", []),                 # negated before
    ("消炎药一般用不着。", []),                           # negated after
    ("外用红霉素软膏即可。", []),                         # topical
    ("必要时服用二甲双胍，并用华法林抗凝。", ["二甲双胍", "华法林"]),
    ("布洛芬、对乙酰氨基酚都可以。", []),                 # OTC
])
def test_prescription_drugs_named(answer, drugs):
    assert [d.name for d in check_medication(answer).rx] == drugs


def test_each_class_gets_its_own_note_with_the_phrase():
    m = check_medication("可以短期用艾司唑仑，疼得厉害时用曲马多。")
    assert len(m.notes) == 2 and all(RX_NOTE in n for n in m.notes)
    assert {d.cls for d in m.rx} == {"sedative", "opioid"} and not m.antibiotic


@pytest.mark.parametrize("user, viral", [
    (["咳嗽两天，流鼻涕"], True), (["嗓子疼三天，没发烧"], True), (["感冒了"], True),
    (["发烧39.5度，咳嗽两天"], False), (["咳嗽三周了"], False), (["咳黄脓痰两天"], False),
    (["尿频尿急两天"], False), (["肚子疼两天"], False),
])
def test_viral_context(user, viral):
    assert viral_context(user) is viral


def test_duration_days():
    assert duration_days("咳嗽两天了") == 2 and duration_days("一周了") == 7 and duration_days("咳嗽") is None
    assert duration_days("3个月") == 90


def test_user_asking_about_antibiotics_gets_the_note_unless_the_answer_says_no():
    assert VIRAL_NOTE in check_medication("多喝水，注意休息。", ["流鼻涕两天，要吃阿莫西林吗？"]).suffix
    assert check_medication("感冒多为病毒感染，不需要吃阿莫西林。", ["流鼻涕两天，要吃阿莫西林吗？"]).suffix == ""


def test_labelled_answers():
    rows = [json.loads(x) for x in LABELLED.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(rows) >= 40
    for kind, note in (("rx_note", RX_NOTE), ("viral_note", VIRAL_NOTE)):
        preds = [note in check_medication(r["answer"], [r["user"]]).suffix for r in rows]
        tp = sum(p and r[kind] for p, r in zip(preds, rows))
        fp = sum(p and not r[kind] for p, r in zip(preds, rows))
        fn = sum(not p and r[kind] for p, r in zip(preds, rows))
        assert tp / (tp + fp) >= 0.9 and tp / (tp + fn) >= 0.9, kind


def test_find_drugs_marks_negation_and_topical():
    ds = find_drugs("不要吃头孢，可以用莫匹罗星软膏，也可以吃阿奇霉素。")
    assert [(d.name, d.negated) for d in ds] == [("头孢", True), ("阿奇霉素", False)]


def test_medication_post_check_adds_notes_at_the_end():
    from ming.safety.medication import MedicationPostCheck

    pc = MedicationPostCheck(["咳嗽两天，要吃抗生素吗"])
    assert pc.sentence("建议口服阿莫西林。") == "建议口服阿莫西林。"
    tail = pc.finish("建议口服阿莫西林。")
    assert tail.startswith("\n\n〔用药提示〕") and RX_NOTE in tail and VIRAL_NOTE in tail
    assert pc.to_dict()["rx_drugs"] == ["阿莫西林"]
    assert MedicationPostCheck(["头疼"]).finish("多休息。") == ""


def test_the_bodys_hormone_is_not_the_prescription_drug():
    """"胰岛素抵抗" / "胰岛素水平" name the hormone, not the medicine: no Rx caution for them."""
    from ming.safety.medication import find_drugs

    assert find_drugs("这可能与胰岛素抵抗有关，胰岛素水平偏高") == []
    assert [d.name for d in find_drugs("需要打胰岛素控制血糖")] == ["胰岛素"]
