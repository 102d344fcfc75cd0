"""The consultation controller on the ten-disease fixture KB: what it asks, when it stops, what it
escalates, and that the state comes from the patient's words only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ming.consult import ConsultConfig, ConsultState, build_state, step
from ming.consult.controller import KINDS
from ming.kb import load_kb

TINY = Path(__file__).parent / "fixtures" / "kb_tiny"


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("kb")
    shutil.copytree(TINY, root / "kb_tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("MING_HOME", str(root / "home"))
    try:
        yield load_kb(root / "kb_tiny", log=lambda m: None)
    finally:
        mp.undo()


def talk(kb, *patient, config=None):
    """Replay patient messages; the assistant says what the controller chose. Returns the actions."""
    msgs, actions = [], []
    for text in patient:
        msgs.append({"role": "user", "content": text})
        a = step(msgs, kb, config)
        actions.append(a)
        msgs.append({"role": "assistant", "content": a.text})
    return actions


def test_issue_conversation_asks_first_then_escalates_appendicitis(kb):
    first, second = talk(kb, "我肚子疼两天了", "在右下腹，按着更疼，有点发烧")
    assert first.kind == "ask" and first.text.count("？") == 1 and first.question.slot == "site"
    assert "建议" not in first.text and first.assessment is None
    assert second.kind == "escalate"
    assert [f.id for f in second.red_flags] == ["rlq_pain_tenderness_fever"]
    assert second.text.startswith("⚠️") and "阑尾炎" in second.text and "急诊" in second.text
    assert second.candidates[0].name == "阑尾炎"


def test_chest_pain_and_leg_swelling_after_a_flight_escalate_across_turns(kb):
    a1, a2 = talk(kb, "胸口疼，有点喘不上气", "我昨天刚坐了十几个小时飞机回来，腿也肿了")
    assert a1.kind == "ask"
    assert a2.kind == "escalate" and a2.red_flags[0].id == "chest_pain_leg_swelling"
    assert a2.state.long_travel and "120" in a2.text
    assert a2.to_dict()["findings"]["long_travel"] is True  # exposed for conversation-level triage


def test_short_answers_belong_to_the_question_just_asked(kb):
    msgs = [{"role": "user", "content": "拉肚子一天了"},
            {"role": "assistant", "content": "请问有没有发烧（发热）？"},
            {"role": "user", "content": "没有"},
            {"role": "assistant", "content": "请问有没有呕吐？"},
            {"role": "user", "content": "不知道"},
            {"role": "assistant", "content": "这次有没有吃过什么药或做过什么处理？"},
            {"role": "user", "content": "没有"}]
    st = build_state(msgs, kb.lexicon)
    assert st.symptoms["发热"].polarity == "absent" and st.symptoms["发热"].said == "没有"
    assert st.symptoms["呕吐"].polarity == "uncertain"
    assert st.medication and "否认" in st.medication[0]
    assert st.allergy == [] and st.history == [] and st.pregnancy == []  # never asked, never invented
    assert "symptom:呕吐" in st.unknown


def test_volunteered_facts_are_read_without_a_question(kb):
    st = build_state([{"role": "user", "content": "女，28岁，小肚子疼三天，吃了布洛芬，青霉素过敏，有高血压"}], kb.lexicon)
    assert st.sex == "女" and st.age == 28 and "下腹痛" in st.present() and "腹痛" in st.present()
    assert st.duration == ["三天"] and st.medication and st.allergy == ["青霉素过敏"] and st.history
    assert st.reproductive_female()


def test_pregnancy_is_asked_for_women_of_reproductive_age_only(kb):
    def slots(*patient):
        return [a.question.slot for a in talk(kb, *patient, config=ConsultConfig(max_questions=12, min_questions=12))
                if a.question]

    woman = slots("女，25岁，小肚子疼两天了", "没有", "没有", "没有", "没有", "没有", "没有", "没有")
    man = slots("男，25岁，小肚子疼两天了", "没有", "没有", "没有", "没有", "没有", "没有", "没有")
    assert "pregnancy" in woman and "pregnancy" not in man


def test_contradiction_is_cleared_up(kb):
    *_, last = talk(kb, "拉肚子两天了，有点发烧", "没有", "没发烧")
    assert last.question.slot == "clarify:发热" and "有没有" in last.text
    assert last.state.contradictions[0]["symptom"] == "发热"


def test_off_topic_answer_gets_the_question_once_more(kb):
    a1, a2 = talk(kb, "肚子疼", "我家的猫也挺好的")
    assert a1.question.slot == "duration"
    assert a2.question.slot == "duration" and a2.text.startswith("可能我没问清楚")
    assert a2.state.offtopic == 1


def test_patient_question_is_answered_then_the_consultation_continues(kb):
    a1, a2 = talk(kb, "拉肚子两天了", "要不要吃点药？")
    assert a2.kind == "answer_then_ask" and "要不要吃点药" in a2.patient_question
    assert "要不要吃点药" in a2.instruction and a2.question is not None


def test_stops_when_the_patient_wants_the_verdict_or_has_nothing_to_add(kb):
    *_, verdict = talk(kb, "拉肚子两天了，还吐", "没有", "我这是什么病？")
    assert verdict.kind == "assess" and "verdict" in verdict.reason
    *_, nothing = talk(kb, "拉肚子两天了，还吐", "没有别的了")
    assert nothing.kind == "assess" and "nothing to add" in nothing.reason


def test_question_limit_stops_asking(kb):
    actions = talk(kb, "头疼", "不知道", "不知道", "不知道", "不知道", config=ConsultConfig(max_questions=3))
    assert [a.kind for a in actions][:3] == ["ask", "ask", "ask"]
    assert actions[3].kind == "assess" and "limit" in actions[3].reason


def test_every_question_turn_asks_exactly_one_question(kb):
    for a in talk(kb, "拉肚子两天了", "有点", "没有", "不清楚", "好像没有", "吃过蒙脱石散"):
        if a.kind in ("ask", "answer_then_ask"):
            assert a.text.count("？") == 1, a.text


def test_assessment_cites_kb_checks_and_departments(kb):
    *_, a = talk(kb, "拉肚子两天了，还吐，有点发烧，肚子也疼", "我这是什么病？")
    assert a.kind == "assess"
    top = a.assessment["candidates"][0]
    assert top["name"] == "急性胃肠炎" and {"腹泻", "呕吐", "发热"} <= set(top["supporting"])
    assert "便常规" in a.assessment["checks"] and "消化内科" in a.assessment["departments"]
    for part in ("初步判断：最可能是急性胃肠炎", "建议检查：", "就诊科室：", "何时就医：", "注意事项：", "不能代替医生面诊"):
        assert part in a.text
    assert "只能使用下面列出的事实" in a.instruction


def test_negatives_and_patient_group_change_the_ranking(kb):
    def top(*patient):
        return [c.name for c in build_and_rank(kb, *patient)]

    assert top("拉肚子，发烧")[0] != "小儿腹泻"
    assert top("孩子2岁，拉肚子，发烧")[0] == "小儿腹泻"
    with_fever = top("下腹痛，发烧，白带多，女")
    assert with_fever[0] == "盆腔炎"
    assert "盆腔炎" not in top("男，下腹痛，发烧")[:1]
    assert top("尿频尿急，下腹痛")[0] == "尿路感染"


def build_and_rank(kb, *patient):
    from ming.consult.rank import rank

    return rank(build_state([{"role": "user", "content": t} for t in patient], kb.lexicon), kb)


def test_action_is_deterministic_and_serialisable(kb):
    msgs = [{"role": "user", "content": "拉肚子两天了"}, {"role": "assistant", "content": "请问有没有发烧（发热）？"},
            {"role": "user", "content": "有点"}]
    a, b = step(msgs, kb), step(msgs, kb)
    assert a.kind in KINDS and a.to_dict() == b.to_dict()
    d = json.loads(json.dumps(a.to_dict(), ensure_ascii=False))
    st = ConsultState.from_dict(d["state"])
    assert st.symptoms["发热"].polarity == "present" and st.to_dict() == a.state.to_dict()
    assert "候选" in a.why() and "发热" in a.why()


def test_after_the_assessment_follow_ups_are_answered_not_re_asked(kb):
    *_, done = talk(kb, "拉肚子两天了", "我这是什么病？")
    assert done.kind == "assess"
    msgs = [{"role": "user", "content": "拉肚子两天了"}, {"role": "assistant", "content": "这种情况持续多久了？"},
            {"role": "user", "content": "我这是什么病？"}, {"role": "assistant", "content": done.text},
            {"role": "user", "content": "那我能吃什么？"}]
    a = step(msgs, kb)
    assert a.kind == "answer" and a.question is None and "事实" in a.instruction


def test_without_a_known_symptom_the_history_is_still_taken(kb):
    actions = talk(kb, "我有一个问题想请教一下", "最近不知道怎么回事", "没有", "没有")
    assert [a.kind for a in actions] == ["ask", "ask", "ask", "ask"]
    slots = [a.question.slot for a in actions]
    assert slots[0] == "chief" and len(set(slots)) == 4


def test_model_phrasing_is_kept_only_when_it_asks_what_was_chosen(kb):
    from ming.consult import phrase

    a = talk(kb, "咳嗽两天了")[0]
    assert a.kind == "ask"
    slot = a.question.slot
    msgs = phrase.model_messages([{"role": "user", "content": "咳嗽两天了"}], a)
    assert msgs[0]["role"] == "system" and a.question.text in msgs[0]["content"]
    assert slot == "symptom:乏力"
    good = "那您这两天有没有觉得浑身没力气？"
    assert phrase.final_text(a, good, kb.lexicon) == good
    assert phrase.final_text(a, "那您有没有发烧？", kb.lexicon) == a.text  # asks something else: template
    assert phrase.final_text(a, "多喝水，注意饮食清淡。", kb.lexicon) == a.text  # no question: template
    assert phrase.final_text(a, "有没有发烧？有没有呕吐？", kb.lexicon) == a.text  # two questions: template
    assert phrase.final_text(a, None, kb.lexicon) == a.text
    esc = talk(kb, "我肚子疼两天了", "在右下腹，按着更疼，有点发烧")[1]
    assert not phrase.wants_model(esc) and phrase.final_text(esc, "没事，多喝水", kb.lexicon) == esc.text


def test_fever_brings_the_temperature_question_first_for_an_infant(kb):
    a1, a2 = talk(kb, "宝宝1岁，发烧一天了", "最高39.5度")
    assert a1.question.slot == "temperature" and "体温" in a1.text
    assert a2.state.temperature == 39.5 and a2.question.slot != "temperature"
    *_, done = talk(kb, "宝宝1岁，发烧一天了", "最高39.5度", "我这是什么病？")
    assert done.assessment["urgency"] == "soon" and "39.5" in done.assessment["when"]


def test_the_site_question_fits_where_it_hurts(kb):
    from ming.consult.questions import TEMPLATES, site_question

    def site(text):
        return site_question(build_state([{"role": "user", "content": text}], kb.lexicon))

    assert site("我肚子疼两天了") == TEMPLATES["site"] and "右下腹" in site("胃疼")
    assert "太阳穴" in site("我最近总是头痛") and "右下腹" not in site("我最近总是头痛")
    assert "胸口" in site("胸口疼了一天")


def test_a_site_named_is_not_asked_again_and_appendicitis_signs_add_up(kb):
    """Right lower quadrant pain is lower abdominal pain (not asked as 下腹痛 again); with fever and pain worse on
    walking (peritonism) or no appetite, the consultation escalates to same-day care for appendicitis."""
    first, second, third = talk(kb, "我肚子疼两天了", "右下腹，走路的时候更疼", "有点发烧，38度左右，不想吃东西")
    assert second.kind == "ask" and "下腹痛" not in second.text
    assert third.text.startswith("⚠️") and "阑尾炎" in third.text and "走路时加重" in third.text
    _, _, appetite = talk(kb, "我肚子疼两天了", "在右下腹", "发烧了，吃不下东西")
    assert appetite.text.startswith("⚠️") and "食欲不振" in appetite.text
    _, _, plain = talk(kb, "我肚子疼两天了", "在右下腹", "没发烧")
    assert not plain.text.startswith("⚠️")


def test_candidates_must_explain_the_chief_complaint(kb):
    """A disease that lists none of the chief complaint's forms ranks behind one that does, whatever else it
    explains (a doctor does not offer a cold for belly pain)."""
    from ming.consult import rank

    st = build_state([{"role": "user", "content": "我肚子疼两天了"}, {"role": "assistant", "content": "有没有发烧？"},
                      {"role": "user", "content": "有点发烧，咳嗽"}], kb.lexicon)
    assert st.chief_symptoms == ["腹痛"]
    cands = {c.name: c for c in rank.rank(st, kb)}
    st.chief_symptoms = []
    plain = {c.name: c for c in rank.rank(st, kb)}
    assert "腹痛" in next(iter(cands.values())).supporting  # the leader explains the belly pain
    cold = [n for n, c in cands.items() if "腹痛" not in c.supporting and n in plain]
    assert cold and all(cands[n].score == pytest.approx(plain[n].score + rank.CHIEF_MISS) for n in cold)
    assert all(c.score == pytest.approx(plain[n].score) for n, c in cands.items() if "腹痛" in c.supporting)


def test_chest_pain_on_exertion_is_sent_to_be_seen_today(kb):
    """Schmitt-Thompson chest pain: pain brought on or made worse by exertion is possible angina (seen today,
    120 if it lasts or comes with sweating); pain on deep breathing after a cold is not this flag."""
    _, exertion = talk(kb, "胸口疼", "正中间，压着疼，干活的时候更明显")
    assert exertion.kind == "escalate" and "心绞痛" in exertion.text and "120" in exertion.text
    _, breathing = talk(kb, "胸口疼", "深呼吸的时候更疼，前两天感冒了")
    assert breathing.kind != "escalate"


def test_a_child_with_diarrhoea_is_asked_about_fluids_and_dehydration_escalates(kb):
    """WHO IMCI / NICE CG84: for a child with diarrhoea or vomiting the first thing to know is hydration (urine,
    tears, drinking, alertness); signs of dehydration send the child to be seen today."""
    first, second = talk(kb, "孩子拉肚子两天了", "小便挺少的，哭的时候没什么眼泪")
    assert first.question.slot == "hydration" and "小便" in first.text
    assert second.kind == "escalate" and "脱水" in second.text and "120" in second.text
    _, fine = talk(kb, "孩子拉肚子两天了", "小便正常，精神还行")
    assert fine.kind != "escalate" and fine.state.known("hydration")
    adult = talk(kb, "我拉肚子两天了")[0]
    assert adult.question.slot != "hydration"


def test_a_late_period_asks_about_pregnancy_first_and_answers_are_read(kb):
    """A late period: whether a pregnancy is possible comes first (and "有同房" answers it); "一个多月了" is a
    duration; "站起来的时候明显" answers what brings it on; "尿有点红" is blood in the urine."""
    first, second = talk(kb, "月经推迟了十天", "有同房")
    assert first.question.slot == "pregnancy" and "同房" in first.text
    assert "可能我没问清楚" not in second.text and second.state.known("pregnancy")
    assert talk(kb, "失眠一个多月了")[0].state.known("duration")
    _, dizzy = talk(kb, "最近老是头晕", "站起来的时候明显")
    assert "可能我没问清楚" not in dizzy.text and "站起来" in dizzy.state.triggers
    assert "血尿" in talk(kb, "腰疼，尿有点红")[0].state.present()


def test_a_child_without_an_age_is_ranked_as_a_child(kb):
    """"孩子拉肚子" says the patient is a child even without an age: children's illnesses get the child's weight,
    not the unknown-age penalty (an adult pneumonia was ranked first for a child's diarrhoea)."""
    from ming.consult import rank

    st = build_state([{"role": "user", "content": "孩子拉肚子两天了"}], kb.lexicon)
    adult = build_state([{"role": "user", "content": "拉肚子两天了"}], kb.lexicon)
    assert st.child and not adult.child
    assert rank.group_fit(st, ("child",)) > 0 > rank.group_fit(adult, ("child",))
    assert rank.group_fit(st, ("elderly",)) < rank.group_fit(adult, ("elderly",))


def test_lower_abdominal_pain_asks_sex_then_pregnancy_first(kb):
    """A lower-abdominal pain's differential depends on sex (ectopic pregnancy, ovarian torsion, PID in a woman):
    sex is asked right after the site, then — a woman of 12–55 — a possible pregnancy, before the symptoms."""
    a = talk(kb, "小肚子疼两天了", "女，28岁")
    assert a[0].question.slot == "profile" and "性别" in a[0].text
    assert a[1].question.slot == "pregnancy" and "怀孕" in a[1].text
    man = talk(kb, "小肚子疼两天了", "男，28岁")
    assert man[1].question.slot != "pregnancy"
    older = talk(kb, "小肚子疼两天了", "女，70岁")
    assert older[1].question.slot != "pregnancy"
    # not a pelvic complaint: the profile keeps its place after the symptoms
    assert talk(kb, "咳嗽两天了")[0].question.slot != "profile"


def test_profile_question_asks_what_is_missing(kb):
    from ming.consult.questions import profile_question

    def st(text):
        return build_state([{"role": "user", "content": text}], kb.lexicon)

    assert "年龄和性别" in profile_question(st("小肚子疼"))
    assert "性别" in profile_question(st("我30岁，小肚子疼")) and "年龄" not in profile_question(st("我30岁，小肚子疼"))
    assert "年龄" in profile_question(st("女，小肚子疼"))
    # a vaginal bleeding or 白带 says the patient is a woman; 前列腺 a man
    assert st("白带多，小肚子疼").sex == "女" and st("前列腺不舒服").sex == "男"


def test_lower_abdominal_pain_in_a_woman_warns_about_ectopic_pregnancy_in_the_assessment(kb):
    *_, a = talk(kb, "小肚子疼两天了", "女，28岁", "我这是什么病？")
    assert a.kind == "assess" and "宫外孕" in a.text
    *_, m = talk(kb, "小肚子疼两天了", "男，28岁", "我这是什么病？")
    assert "宫外孕" not in m.text
