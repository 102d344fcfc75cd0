"""Report explanations held to the findings: claim extraction, the per-sentence streaming check, the
composed fallback explanation, and GroundedReply's regenerate-once-then-compose policy."""

import json
from pathlib import Path

import pytest

from ming.safety.grounding import (FALLBACK_HEADER, GroundedReply, SentenceChecker, check_sentence, check_text,
                                   compose_explanation, extract_claims, retry_hint, split_sentences)
from ming.safety.report import parse_report

ISSUE = "血常规：白细胞 13.5×10^9/L，中性粒细胞 85%，血红蛋白 118 g/L（女），C反应蛋白 42 mg/L。这是什么情况？"
LABELLED = Path(__file__).resolve().parent / "fixtures" / "grounding" / "labelled_sentences.jsonl"


@pytest.fixture(scope="module")
def findings():
    return parse_report(ISSUE)


def test_issue_contradiction_is_found(findings):
    bad = check_sentence("血常规检查提示血红蛋白高，可能与出血等疾病有关。", findings)
    assert len(bad) == 1 and bad[0].kind == "contradiction" and bad[0].findings[0].key == "HGB"
    assert "118 g/L" in bad[0].describe() and "正常" in bad[0].describe()
    assert check_sentence("积极治疗出血性疾病，以防止血红蛋白升高。", findings) == []  # prevention, not a claim


@pytest.mark.parametrize("sentence, expected", [
    ("白细胞、中性粒细胞和C反应蛋白均升高。", [("白细胞", "high"), ("中性粒细胞", "high"), ("C反应蛋白", "high")]),
    ("白细胞计数13.5，偏高", [("白细胞计数", "high")]),
    ("血红蛋白不高。", [("血红蛋白", "not_high")]),
    ("白细胞没有升高。", [("白细胞", "not_high")]),
    ("偏高的白细胞提示感染。", [("白细胞", "high")]),
    ("尿隐血阳性。", [("尿隐血", "abnormal")]),
    ("如果白细胞升高，需要复查。", []),
    ("多吃高蛋白食物，低盐饮食。", []),
    ("C反应蛋白 42 mg/L，属于正常范围。", [("C反应蛋白", "normal")]),  # "mg" is a unit here, not magnesium
    ("血压属于正常高值。", [("血压", "normal")]),
])
def test_extract_claims(sentence, expected):
    assert [(c.alias, c.direction) for c in extract_claims(sentence)] == expected


def test_panels_and_ambiguous_names():
    fs = parse_report("谷丙转氨酶 86 U/L，谷草转氨酶 30 U/L，总胆固醇 4.0 mmol/L，甘油三酯 2.5 mmol/L")
    assert check_sentence("转氨酶升高。", fs) == []          # ALT is high: a panel claim holds if one member is
    assert check_sentence("转氨酶正常。", fs)                  # ...and "normal" needs every member normal
    assert check_sentence("血脂都正常。", fs)
    assert check_sentence("血脂偏高。", fs) == []


def test_ungraded_is_never_contradicted():
    fs = parse_report("肌酐 1.2 mmol/L，尿素 5.0 mmol/L")
    assert fs[0].status == "ungraded"
    assert check_sentence("肌酐偏高。", fs) == [] and check_sentence("肌酐正常。", fs) == []


def test_unreported_tests_flagged_only_when_asked(findings):
    assert check_sentence("血小板偏低。", findings) == []
    bad = check_sentence("血小板偏低。", findings, block_unreported=True)
    assert [v.kind for v in bad] == ["unreported"]


def test_labelled_sentences_precision_recall():
    rows = [json.loads(x) for x in LABELLED.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(rows) >= 80 and sum(r["contradiction"] for r in rows) >= 30
    preds = [bool(check_sentence(r["sentence"], parse_report(r["report"]))) for r in rows]
    tp = sum(p and r["contradiction"] for p, r in zip(preds, rows))
    fp = sum(p and not r["contradiction"] for p, r in zip(preds, rows))
    fn = sum(not p and r["contradiction"] for p, r in zip(preds, rows))
    assert tp / (tp + fp) >= 0.95 and tp / (tp + fn) >= 0.95


def test_split_sentences_holds_back_the_unfinished_one():
    done, rest = split_sentences("白细胞偏高。血红蛋白正常；C反应")
    assert done == ["白细胞偏高。", "血红蛋白正常；"] and rest == "C反应"


def test_streaming_checker_releases_whole_passing_sentences_and_stops(findings):
    ck = SentenceChecker(findings)
    out = []
    for ch in ["白细胞", "升高，提示", "感染。血红", "蛋白偏低，", "说明贫血。多喝水。"]:
        shown, bad = ck.feed(ch)
        out.append(shown)
    assert out[:2] == ["", ""] and out[2] == "白细胞升高，提示感染。"
    assert ck.stopped and ck.violations[0].findings[0].key == "HGB"
    assert "贫血" not in ck.released
    assert ck.passed_after == ["多喝水。"]  # later general advice that names no test


def test_compose_explanation_covers_each_abnormal_value_with_source(findings):
    text = compose_explanation(findings)
    for name in ("白细胞计数", "中性粒细胞百分比", "C反应蛋白"):
        assert name in text
    assert "血红蛋白" not in text  # normal: not listed as abnormal
    assert "来源：《诊断学》第9版" in text and "细菌感染" in text and "不是诊断" in text
    assert check_text(text, findings) == []  # ming's own text passes its own check


def test_compose_explanation_lists_ungraded_and_all_normal():
    assert "都在正常范围内" in compose_explanation(parse_report("白细胞 6.0，血红蛋白 140 g/L，男"))
    assert "未能按参考表判断" in compose_explanation(parse_report("肌酐 1.2 mmol/L，尿素 9.5 mmol/L"))


def _scripted(*attempts):
    calls = []

    def generate(hint, prefix):
        calls.append((hint, prefix))
        text = attempts[len(calls) - 1]
        for i in range(0, len(text), 3):
            yield text[i:i + 3]
    return generate, calls


def test_grounded_reply_passes_a_consistent_answer_untouched(findings):
    answer = "白细胞和C反应蛋白升高，提示细菌感染可能。血红蛋白正常。建议就医。"
    gen, calls = _scripted(answer)
    gr = GroundedReply(gen, findings)
    assert "".join(gr) == answer and len(calls) == 1 and not gr.result.violations


def test_grounded_reply_regenerates_once_with_the_contradiction_named(findings):
    gen, calls = _scripted("白细胞升高。血红蛋白偏高，可能有出血。", "C反应蛋白也升高，建议就医。")
    gr = GroundedReply(gen, findings)
    text = "".join(gr)
    assert text == "白细胞升高。C反应蛋白也升高，建议就医。"
    assert calls[1][1] == "白细胞升高。" and "血红蛋白" in calls[1][0] and "118 g/L" in calls[1][0]
    assert gr.result.regenerated and not gr.result.fallback and check_text(text, findings) == []


def test_grounded_reply_falls_back_to_the_composed_explanation(findings):
    gen, calls = _scripted("血红蛋白偏高。", "白细胞正常。多休息，多喝水。中性粒细胞偏低。")
    gr = GroundedReply(gen, findings)
    text = "".join(gr)
    assert gr.result.fallback and len(calls) == 2
    assert FALLBACK_HEADER.strip() in text and "C反应蛋白 42 mg/L，偏高" in text
    assert "多休息，多喝水。" in text  # the model's general advice survives
    assert check_text(text, findings) == []


def test_grounded_reply_without_retry_or_fallback():
    fs = parse_report(ISSUE)
    gen, calls = _scripted("血红蛋白偏高。后面的话。")
    gr = GroundedReply(gen, fs, retry=False, fallback=False)
    assert "".join(gr) == "" and len(calls) == 1 and gr.result.violations


def test_retry_hint_names_the_finding(findings):
    v = check_sentence("血红蛋白偏低。", findings)
    assert "血红蛋白 118 g/L" in retry_hint(v) and "更正" in retry_hint(v)


def test_report_post_check_regenerates_once_then_composes(findings):
    from ming.respond import Regenerate
    from ming.safety.grounding import ADVICE_HEADER, ReportPostCheck

    pc = ReportPostCheck(findings)
    assert pc.sentence("白细胞升高。") == "白细胞升高。"
    again = pc.sentence("血红蛋白偏高。")  # first contradiction: answer again with it named
    assert isinstance(again, Regenerate) and "血红蛋白 118 g/L" in again.hint and "更正" in again.hint
    pc.regenerating(again.hint)  # the pipeline restarts the model after "白细胞升高。"
    assert pc.sentence("C反应蛋白升高。") == "C反应蛋白升高。"
    assert pc.sentence("血红蛋白偏低。") == ""  # second contradiction: held, no second regeneration
    held = [pc.sentence(s) for s in ["中性粒细胞也偏高。", "注意休息。", "多喝水。"]]
    assert held == ["", "", ""]  # everything after is held; advice comes after the composed explanation
    tail = pc.finish("白细胞升高。C反应蛋白升高。")
    assert tail.startswith(FALLBACK_HEADER) and "C反应蛋白" in tail
    assert tail.endswith(ADVICE_HEADER + "注意休息。多喝水。") and "中性粒细胞也偏高" not in tail
    d = pc.to_dict()
    assert d["attempts"] == 2 and d["regenerated"] and d["fallback"] and d["held_sentences"] == 5
    assert [v["tests"] for v in d["violations"]] == [["HGB"], ["HGB"]]
    # the pipeline could not regenerate (no room): the first contradiction falls back at once
    pc = ReportPostCheck(findings)
    assert isinstance(pc.sentence("血红蛋白偏高。"), Regenerate) and pc.sentence("注意休息。") == ""
    assert pc.finish("").startswith(FALLBACK_HEADER.lstrip("\n")) and pc.to_dict()["attempts"] == 1
    # a regeneration that agrees with the table: no fallback
    pc = ReportPostCheck(findings)
    pc.sentence("血红蛋白偏高。")
    pc.regenerating("…")
    assert pc.sentence("血红蛋白正常。") == "血红蛋白正常。" and pc.finish("血红蛋白正常。") == ""
    assert pc.to_dict()["fallback"] is False and pc.to_dict()["regenerated"]
    ok = ReportPostCheck(findings, retry=False)
    assert ok.sentence("C反应蛋白升高。") == "C反应蛋白升高。" and ok.finish("") == ""
    assert ok.sentence("血红蛋白偏高。") == "" and ok.finish("").startswith(FALLBACK_HEADER.lstrip("\n"))


def test_sentences_from_the_models_answers():
    """Sentences the embedded model wrote about sampled reports, labelled by hand (bench/grounding.py)."""
    path = LABELLED.parent / "model_sentences.jsonl"
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(rows) >= 20
    preds = [bool(check_sentence(r["sentence"], parse_report(r["report"]))) for r in rows]
    wrong = [r["sentence"] for p, r in zip(preds, rows) if p != bool(r["contradiction"])]
    assert len(wrong) <= 0.1 * len(rows), wrong


def test_condition_names_state_a_direction():
    fs = parse_report("血脂：总胆固醇 4.5 mmol/L，甘油三酯 1.2 mmol/L，低密度脂蛋白胆固醇 2.8 mmol/L。血压 132/86")
    bad = check_sentence("根据以上信息，诊断为高血脂。", fs)
    assert bad and bad[0].claim.text == "高血脂" and "甘油三酯 1.2 mmol/L，正常" in bad[0].describe()
    assert check_sentence("血压属于正常高值，还没有达到高血压。", fs) == []
    assert check_sentence("您有高血压。", fs)
    assert check_sentence("高血压患者应规律服药。", fs) == []  # about people with it, not this report
    assert check_sentence("建议低盐饮食，预防高血压。", fs) == []


def test_out_of_range_phrases_are_directions_not_normal_claims():
    """"超过了正常范围" says high (it is no claim of normal), "低于参考范围" says low."""
    from ming.safety.grounding import check_sentence
    from ming.safety.report import parse_report

    f = parse_report("血常规：白细胞 13.5×10^9/L，中性粒细胞 85%，血红蛋白 118 g/L（女），C反应蛋白 42 mg/L")
    assert check_sentence("白细胞超过了正常范围。", f) == []  # agrees with the table (WBC high)
    assert check_sentence("白细胞高于参考值上限。", f) == []
    for wrong, said in (("血红蛋白（118 g/L）都超过了正常范围。", "high"), ("血红蛋白低于正常范围。", "low")):
        v = check_sentence(wrong, f)
        assert [(x.kind, x.claim.direction) for x in v] == [("contradiction", said)], wrong
