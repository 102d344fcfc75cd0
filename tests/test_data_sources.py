"""One test group per source converter, on small fixtures written for these tests."""

from collections import Counter
from pathlib import Path

import pytest

from ming.data.records import validate_record
from ming.data.sources import get_converter
from ming.data.sources._common import SourceContext

RAW = Path(__file__).parent / "fixtures" / "data" / "raw"


def run(kind, paths, **options):
    ctx = SourceContext(name=kind, kind=kind, subset="s", category="knowledge_qa", options=options)
    recs = list(get_converter(kind).iter_records([RAW / p for p in paths], ctx))
    for r in recs:
        assert validate_record(r) == [], r
    return recs, ctx


def text(rec):
    return [m["content"] for m in rec["messages"]]


def test_exam_mcq_states_answer_explains_and_handles_multi_answer():
    recs, ctx = run("exam_mcq", ["exam.jsonl"])
    by = {r["meta"]["origin"].split(":")[-1]: r for r in recs}
    single = text(recs[0])
    assert "A. 利福平" in single[0] and single[1].startswith("正确答案是 A. 利福平") and "解析：利福平" in single[1]
    multi = next(r for r in recs if r["meta"]["answer"] == "ABD")
    assert "多选" in text(multi)[0] and "3个正确答案" in text(multi)[1] and "B. 头孢曲松" in text(multi)[1]
    assert "其余选项（C）" in text(multi)[1]  # no explanation in the source: says the others do not fit
    assert len(recs) == 5 and len(by) == 5
    assert ctx.errors.n_errors == 2  # missing answer + broken JSON, each with file:line
    assert any(":6: missing field(s) ['answer']" in e for e in ctx.errors.examples)
    excluded, ctx = run("exam_mcq", ["exam.jsonl"], cases="exclude")
    assert len(excluded) == 3 and ctx.skips == {"case_filter": 2}


def test_exam_mcq_unknown_option_is_a_user_error():
    from ming.errors import MingError

    with pytest.raises(MingError, match="unknown option"):
        run("exam_mcq", ["exam.jsonl"], casse="exclude")


def test_doctor_qa_cleans_greetings_signoffs_ads_and_keeps_department():
    recs, _ = run("doctor_qa", ["doctor_qa.jsonl"])
    a1, a2 = text(recs[0])[1], text(recs[1])[1]
    assert a1.startswith("病情分析：糖耐量受损") and "祝您" not in a1 and "\n指导意见：建议控制饮食" in a1
    assert not a2.startswith("您好") and "很高兴" not in a2 and "希望我的回答" not in a2 and "追问" not in a2
    assert a2.startswith("38度属于低热")
    assert recs[0]["meta"]["department"] == "内分泌科"


def test_doctor_qa_reads_gbk_csv():
    recs, ctx = run("doctor_qa", ["doctor_qa_gbk.csv"])
    assert len(recs) == 3 and ctx.errors.warnings


def test_knowledge_graph_relations_many_types_no_duplicate_questions():
    recs, ctx = run("knowledge_graph", ["kg"])
    rels = Counter(r["meta"]["relation"] for r in recs)
    assert {"has_symptom", "belongs_to_department", "common_drug", "need_check", "diet", "has_complication",
            "susceptible_people", "transmission_way", "treatment"} <= set(rels)
    qs = [text(r)[0] for r in recs]
    assert len(qs) == len(set(qs))
    cold = {r["meta"]["relation"]: text(r) for r in recs if r["meta"]["disease"] == "感冒"}
    assert "鼻塞、流涕、咽痛" in cold["has_symptom"][1] and "内科、呼吸内科" in cold["has_symptom"][1]
    assert "忌吃：辣椒、白酒" in cold["diet"][1]
    assert "一般没有传染性" in {r["meta"]["relation"]: text(r) for r in recs
                             if r["meta"]["disease"] == "胃炎"}["transmission_way"][1]
    assert ctx.errors.n_errors == 1  # the triple with an unknown relation, reported with its line
    phrasings = {text(r)[0].replace(r["meta"]["disease"], "{d}") for r in recs if r["meta"]["relation"] == "has_symptom"}
    assert len(phrasings) >= 2  # several phrasings per relation across diseases


def test_knowledge_graph_passages_trim_headings():
    recs, _ = run("knowledge_graph", ["kg"], mode="passages", min_passage_chars=10)
    cause = next(r for r in recs if r["meta"]["relation"] == "cause")
    assert text(cause)[1].startswith("多由鼻病毒")


def test_dialogue_ends_in_assessment_and_drops_when_none():
    recs, ctx = run("dialogue", ["dialogue.jsonl"])
    assert len(recs) == 2 and ctx.skips == {"no_assessment": 1}
    d1 = text(recs[0])
    assert recs[0]["messages"][-1]["role"] == "assistant" and "考虑急性支气管炎" in d1[-1]
    d2 = recs[1]["messages"]
    assert d2[0]["role"] == "user" and "某某医院" not in d2[0]["content"] and "填写" not in d2[0]["content"]
    assert "上呼吸道感染" in d2[-1]["content"] and "多饮水" in d2[-1]["content"]
    assert all(m["content"] != "好" for m in d2)


def test_case_reasoning_asks_reveals_concludes():
    recs, ctx = run("case_reasoning", ["exam.jsonl"])
    assert len(recs) == 2 and ctx.skips.get("not_a_case") == 3
    m = text(recs[0])
    assert len(m) == 4 and "多次患肺炎" in m[0] and "胸片" not in m[0]
    assert "影像学检查" in m[1] and m[2].startswith("胸片示") and "动脉导管未闭" in m[3]
    assert "（C对）" not in m[3]
    pat, _ = run("case_reasoning", ["exam.jsonl"], voice="patient")
    assert "我家孩子" in text(pat[0])[0]
    clin, _ = run("case_reasoning", ["clin.jsonl"])
    c = text(clin[0])
    assert len(c) == 6 and "体格检查" in c[2] and c[3].startswith("诊断：嵌顿性") and c[4] == "简述治疗原则。"


def test_general_instruct_keeps_and_drops_empty_outputs():
    recs, ctx = run("general_instruct", ["general.jsonl"])
    assert len(recs) == 3 and ctx.skips == {"empty_output": 1}
    assert text(recs[1])[0] == "总结给定的一段文字。\n\n心理健康对于一个人的整体福祉非常重要。保证睡眠、锻炼、健康饮食有助于保持心理健康。"


def test_safety_refuses_and_points_to_care():
    recs, ctx = run("safety", ["safety.jsonl"])
    assert ctx.skips == {"false_premise_goes_to_counterfactual": 1, "no_template": 1}
    by = {r["meta"]["safety_category"]: text(r)[1] for r in recs}
    assert "120" in by["Safety"] and "不能提供" in by["Safety"]
    assert "个人信息" in by["Data protection"] or "隐私" in by["Data protection"]
    assert by["dangerous_request_drugs_or_self_harm"].startswith("大量服用安眠药")
    self_med, _ = run("safety", ["kg"], mode="kg_self_medication")
    assert all("不能" in text(r)[1] and "就诊" in text(r)[1] for r in self_med) and len(self_med) == 3


def test_counterfactual_corrects_false_premises():
    recs, _ = run("counterfactual", ["kg"])
    kinds = Counter(r["meta"]["false_relation"] for r in recs)
    assert kinds["food"] == 2
    food = next(r for r in recs if r["meta"]["false_relation"] == "food")
    assert "不对" in text(food)[1] and food["meta"]["false_item"] in text(food)[0]
    for r in recs:
        if r["meta"]["false_relation"] == "drug":
            assert "并不是治疗" in text(r)[1]
            assert r["meta"]["false_item"] not in {"复方氨酚烷胺片"} or r["meta"]["disease"] != "感冒"
    rows, ctx = run("counterfactual", ["safety.jsonl"], mode="prompts")
    assert len(rows) == 1 and "恶魔" in text(rows[0])[0] and "无关" in text(rows[0])[1]


def test_medical_instruct_tasks_have_checkable_answers():
    recs, _ = run("medical_instruct", ["doctor_qa.jsonl"])
    tasks = Counter(r["meta"]["task"] for r in recs)
    assert tasks == {"title": 3, "triage": 3}
    title = next(r for r in recs if r["meta"]["task"] == "title")
    assert text(title)[1] == "糖耐量受损怎么办"
    kg, _ = run("medical_instruct", ["kg"], mode="kg_tasks")
    mention = [r for r in kg if r["meta"]["task"] == "symptom_mentions"]
    assert mention
    for r in mention:
        q, a = text(r)
        desc = q.split("\n")[1]
        for s in a.split("：", 1)[1].rstrip("。").split("、"):
            assert s in desc  # every symptom named in the answer appears in the text


def test_exam_mcq_short_reply_gives_letter_then_a_short_reason():
    recs, _ = run("exam_mcq", ["exam.jsonl"], reply="short", reason_chars=20)
    single = text(recs[0])[1]
    assert single.startswith("答案：A（A. 利福平）\n理由：")
    reason = single.split("理由：", 1)[1]
    assert len(reason) <= 22 and reason.startswith("利福平")
    multi = text(next(r for r in recs if r["meta"]["answer"] == "ABD"))[1]
    assert multi.startswith("答案：ABD（") and "其余选项（C）" in multi
    # the evaluator's extractor reads the letter off this format
    from ming.eval.extract import extract_choice

    assert extract_choice(single, {"A": "", "B": "", "C": "", "D": "", "E": ""}).letters == "A"


def test_dialogue_structured_ending_and_question_limit():
    recs, ctx = run("dialogue", ["dialogue.jsonl"], ending="structured")
    with_source_diagnosis = text(recs[1])[-1]
    assert with_source_diagnosis.startswith("【初步判断】") and "上呼吸道感染" in with_source_diagnosis
    assert "【建议】多饮水" in with_source_diagnosis and "【何时就医】" in with_source_diagnosis
    own_assessment = text(recs[0])[-1]  # the doctor's own last turn is kept and told when to see a doctor
    assert own_assessment.startswith("考虑急性支气管炎") and "【何时就医】" in own_assessment
    strict, ctx = run("dialogue", ["dialogue.jsonl"], max_questions=1)
    assert ctx.skips.get("too_many_questions") == 1  # dl-1's doctor asks two questions in one turn
    assert [r["id"] for r in strict] == [recs[1]["id"]]


def test_sign_off_cue_holds_wherever_the_sign_off_pattern_matches():
    """The answer cleaner looks for a sign-off only in texts with one of the cue words that every alternative of
    the pattern holds; on random texts built from the pattern's pieces and other words, the pattern never matches
    a text without a cue."""
    import random

    from ming.data.sources.doctor_qa import _SIGNOFF, _SIGNOFF_CUE

    pieces = ["祝", "您", "早日康复", "希望", "以上的", "回答", "能", "对", "你", "有", "所", "帮助", "如果", "若", "还",
              "其他", "疑问", "问题", "咨询", "欢迎", "随时", "请", "记得", "点击", "关注", "采纳", "好评", "点赞", "此",
              "本", "意见", "仅供参考", "仅作参考", "扫码", "加我", "私信", "我是", "智能", "助手", "AI", "很高兴", "为",
              "帮到", "本人", "是", "医生", "医师", "主治", "副主任", "主任", "回复", "解答", "，", "。", "头痛", "发热"]
    rng = random.Random(6)
    matched = 0
    for _ in range(30000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        if _SIGNOFF.search(text):
            matched += 1
            assert _SIGNOFF_CUE.search(text), text
    assert matched > 1000


def test_an_assessment_is_a_sentence_with_an_assessment_word_that_is_not_a_question():
    from ming.data.sources.dialogue import gives_assessment

    yes = ["考虑是感冒。", "建议多喝水", "多休息。可能是病毒感染，不用担心。", "You should rest.", "It may be a cold.\n好的",
           "这可能是感冒吗？不，建议复查。", "咳嗽多久了？考虑支气管炎", "Consider an X-ray!",
           "建议复查\n吗"]  # a line end ends a sentence
    no = ["", "咳嗽多久了？", "考虑感冒吗？", "可能是什么引起的呢", "Should I? ", "xshould be fine", "maybee",
          "请问有发热吗？有没有咳痰？", "是不是可能过敏呢？\n"]
    assert [t for t in yes if not gives_assessment(t)] == []
    assert [t for t in no if gives_assessment(t)] == []


def test_the_answer_cleaner_cuts_sign_offs_clause_by_clause():
    from ming.data.sources.doctor_qa import clean_answer

    cases = {"考虑感冒，多喝水。祝您早日康复！": "考虑感冒，多喝水。",
             "考虑感冒，有问题，可以再问。": "考虑感冒，有问题，可以再问。",  # cue words without a sign-off: kept
             "注意多喝水希望对您有帮助": "注意多喝水",  # a sign-off glued on without punctuation
             "您好，考虑感冒。如有疑问请随时咨询我。": "考虑感冒。",
             "病情分析：你好，考虑感冒。指导意见：多休息，祝早日康复": "病情分析：考虑感冒。\n指导意见：多休息"}
    assert {t: clean_answer(t) for t in cases} == cases


def _write_graph(folder: Path, diseases: dict[str, list[str]], bad_line: bool = False) -> Path:
    import json

    folder.mkdir(parents=True)
    ents = [{"name": d, "type": "Disease", "attrs": {"desc": f"{d}的简介"}} for d in diseases]
    tris = [{"head": d, "relation": "has_symptom", "tail": s} for d, syms in diseases.items() for s in syms]
    lines = [json.dumps(t, ensure_ascii=False) for t in tris] + (["{not json"] if bad_line else [])
    (folder / "entities.jsonl").write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in ents) + "\n",
                                           encoding="utf-8")
    (folder / "triples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_a_parsed_graph_is_kept_on_disk_for_the_other_sources_and_processes_of_a_build(tmp_path, monkeypatch):
    from ming.data.errorlog import ErrorLog
    from ming.data.sources import _kg

    a = _write_graph(tmp_path / "a", {"感冒": ["发热", "咳嗽"], "胃炎": ["腹痛"]})
    b = _write_graph(tmp_path / "b", {"肺炎": ["发热", "气促"]})
    bad = _write_graph(tmp_path / "bad", {"肠炎": ["腹泻"]}, bad_line=True)
    parsed = []
    real = _kg.load_kg
    monkeypatch.setattr(_kg, "load_kg", lambda *a_, **k: parsed.append(a_[0]) or real(*a_, **k))
    monkeypatch.setattr(_kg, "_CACHE", {})
    cache = tmp_path / "work" / "kg"
    _kg.use_disk_cache(cache)
    try:
        logs = [ErrorLog() for _ in range(5)]
        first = _kg.load_kg_cached(a, logs[0])
        _kg.load_kg_cached(b, logs[1])  # the in-memory cache keeps only the latest graph
        again = _kg.load_kg_cached(a, logs[2])  # ... so this one comes from the disk, not a second parse
        assert [Path(p) for p in parsed] == [a, b]
        assert again == first and again.diseases["感冒"].rel["has_symptom"] == ["发热", "咳嗽"]
        assert logs[2].rows == logs[0].rows and sum(logs[2].rows.values()) == 2 + 3  # rows reported on a hit too
        assert len(list(cache.glob("kg-*.pickle"))) == 2
        _kg.load_kg_cached(bad, logs[3])
        _kg.load_kg_cached(a, logs[4])
        _kg.load_kg_cached(bad, logs[3])  # a graph with a bad line is not stored: parsed again, named again
        assert [Path(p) for p in parsed] == [a, b, bad, bad]
        assert len(list(cache.glob("kg-*.pickle"))) == 2 and logs[3].n_errors == 2
    finally:
        _kg.use_disk_cache(None)
    monkeypatch.setattr(_kg, "_CACHE", {})
    _kg.load_kg_cached(a, ErrorLog())  # no build folder set: nothing is written or read from disk
    assert [Path(p) for p in parsed][-1] == a and len(list(cache.glob("kg-*.pickle"))) == 2
