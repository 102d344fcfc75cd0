"""Lab / exam report parsing and grading on the hand-written reports in tests/fixtures/safety."""

import json
from pathlib import Path

import pytest

from ming.cli.main import main
from ming.safety.report import classify_bp, findings_table, grounding_text, is_abnormal, parse_report

FIX = Path(__file__).resolve().parent / "fixtures" / "safety" / "reports"
EXPECTED = json.loads((FIX / "expected.json").read_text(encoding="utf-8"))


def test_at_least_20_reports():
    assert len(EXPECTED) >= 20 and all((FIX / n).is_file() for n in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_report_statuses(name):
    got = {f.key: f.status for f in parse_report((FIX / name).read_text(encoding="utf-8"))}
    assert {k: got.get(k) for k in EXPECTED[name]} == EXPECTED[name]


def test_showcase_abnormal_items_exactly():
    fs = parse_report((FIX / "01_ming_showcase.txt").read_text(encoding="utf-8"))
    abnormal = {f.key: f for f in fs if is_abnormal(f)}
    assert set(abnormal) == {"GGT", "TG", "U_BLD"}
    assert abnormal["GGT"].value == 65 and abnormal["GGT"].flag == "↑"
    assert abnormal["TG"].value == 1.75 and abnormal["TG"].category == "边缘升高"
    assert abnormal["U_BLD"].value == "弱阳性"
    bp = next(f for f in fs if f.key == "BP")
    assert bp.status == "normal" and "正常高值" in bp.category  # 130/85 is not "high"
    tc = next(f for f in fs if f.key == "TC")
    assert tc.status == "normal" and tc.category == "合适水平"


def test_report_arrow_and_printed_range_and_table():
    # an arrow with no printed range wins over the table (the lab's own range may be tighter) ...
    assert parse_report("谷丙转氨酶 45 ↑ U/L")[0].status == "high"
    # ... but not over the printed numbers it contradicts (an arrow typed by hand or shifted a row by an OCR)
    f = parse_report("谷丙转氨酶 30 ↑ U/L 9-50")[0]
    assert f.status == "normal" and "与所印参考范围不符" in f.note and f.flag == "↑"
    assert parse_report("谷丙转氨酶 50 ↑ U/L 9-50")[0].status == "high"  # on the limit: the lab's mark stands
    # nor over a table that says the opposite direction ("↑" next to a potassium of 2.9)
    k = parse_report("钾 2.9 ↑ mmol/L")[0]
    assert k.status == "low" and "方向相反" in k.note
    f = parse_report("谷丙转氨酶 45 U/L (0-40)")[0]
    assert f.status == "high" and f.ref_source == "报告所印参考范围"
    assert parse_report("谷丙转氨酶 45 U/L")[0].status == "normal"  # table 9-50 (men) / 7-40 (women) -> combined


def test_units_are_converted():
    glu = parse_report("血糖 126 mg/dL")[0]
    assert glu.status == "high" and "换算为 7.0 mmol/L" in glu.note
    assert parse_report("肌酐 1.0 mg/dL")[0].status == "normal"  # 88.4 umol/L
    assert parse_report("肌酐 2.0 mg/dL")[0].status == "high"


def test_sex_specific_ranges():
    assert parse_report("血红蛋白 125 g/L", sex="female")[0].status == "normal"
    assert parse_report("血红蛋白 125 g/L", sex="male")[0].status == "low"
    assert parse_report("性别：女 血红蛋白 125 g/L")[0].status == "normal"


@pytest.mark.parametrize("s, d, status, word", [
    (118, 76, "normal", "正常血压"), (130, 85, "normal", "正常高值"), (145, 92, "high", "1级"),
    (150, 80, "high", "单纯收缩期"), (165, 102, "high", "2级"), (185, 112, "high", "3级"), (85, 55, "low", "低血压")])
def test_blood_pressure_classified_per_guideline(s, d, status, word):
    f = classify_bp(s, d)
    assert f.status == status and word in f.category


def test_no_numbers_no_findings_and_plain_chat_untouched():
    assert parse_report("我最近总是头疼，怎么办") == []
    assert parse_report("孩子今年3岁了，吃了2次药") == []


def test_table_and_grounding_text():
    fs = parse_report((FIX / "01_ming_showcase.txt").read_text(encoding="utf-8"))
    md = findings_table(fs)
    assert md.startswith("| 项目 |") and "偏高 ↑" in md and "γ-谷氨酰转移酶" in md
    g = grounding_text(fs)
    assert "异常 3 项" in g and "不要说成偏高" in g


def test_cli_report_json(capsys):
    assert main(["report", str(FIX / "01_ming_showcase.txt"), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    ggt = next(r for r in rows if r["key"] == "GGT")
    assert {"name", "value", "unit", "reference_range", "status"} <= set(ggt)
    assert ggt["status"] == "high" and ggt["value"] == 65
    assert {r["status"] for r in rows} <= {"high", "low", "normal", "abnormal", "ungraded"}


def test_cli_report_table_and_errors(tmp_path, capsys):
    assert main(["report", str(FIX / "02_liver_table.txt")]) == 0
    out = capsys.readouterr().out
    assert "偏高" in out and "6 项，异常 3 项" in out
    empty = tmp_path / "e.txt"
    empty.write_text("没有数字的文本", encoding="utf-8")
    assert main(["report", str(empty)]) == 2
    assert "no test results recognised" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.txt")]) == 2


def test_issue17_example_table():
    fs = parse_report((FIX / "23_issue17_cbc_crp.txt").read_text(encoding="utf-8"))
    by = {f.key: f for f in fs}
    assert [f.key for f in fs] == ["WBC", "NEUT_PCT", "HGB", "CRP"]
    assert by["WBC"].status == "high" and by["NEUT_PCT"].status == "high" and by["CRP"].status == "high"
    assert by["HGB"].status == "normal" and "（女）" in by["HGB"].ref_source and by["HGB"].ref_high == 150
    md = findings_table(fs)
    assert "| 中性粒细胞百分比（中性粒细胞） | 85 % | 40–75 % | 偏高 ↑ |" in md


@pytest.mark.parametrize("text, key", [
    ("中性粒细胞 85%", "NEUT_PCT"), ("中性粒细胞 6.8×10^9/L", "NEUT_ABS"), ("淋巴细胞 1.0", "LYM_ABS"),
    ("淋巴细胞 35", "LYM_PCT"), ("单核细胞 0.4", "MONO_ABS"), ("嗜酸性粒细胞 3.5%", "EO_PCT"),
    ("嗜碱性粒细胞 0.02 ×10^9/L", "BASO_ABS"), ("PCT 0.22 %", "PCT_PLT"), ("PCT 0.8 ng/mL", "PROCAL"),
])
def test_bare_differential_names_route_by_unit_then_value(text, key):
    assert parse_report(text)[0].key == key


@pytest.mark.parametrize("text, key, status", [
    ("总胆固醇 240 mg/dL", "TC", "high"), ("总胆固醇 180 mg/dL", "TC", "normal"),
    ("低密度脂蛋白 160 mg/dL", "LDLC", "high"), ("甘油三酯 150 mg/dL", "TG", "normal"),
    ("肌酐 1.5 mg/dL", "CREA", "high"), ("尿酸 8.0 mg/dL", "UA", "high"), ("血钙 9.5 mg/dL", "CA", "normal"),
    ("总胆红素 2.0 mg/dL", "TBIL", "high"), ("D-二聚体 800 ng/mL", "DDIMER", "high"),
    ("肌钙蛋白I 0.05 ng/mL", "HSTNI", "high"), ("血清铁 30 ug/dL", "FE", "low"),
])
def test_unit_conversions(text, key, status):
    f = parse_report(text)[0]
    assert (f.key, f.status) == (key, status) and "换算为" in f.note


def test_values_that_cannot_be_graded_are_listed_not_dropped():
    fs = parse_report("肌酐 1.2 mmol/L，某某抗体 3.2 U/mL，身高 170 cm，尿蛋白 0.3 g/L，钾 4.0 mmol/L")
    by = {f.key: f for f in fs}
    assert by["CREA"].status == "ungraded" and "无法换算" in by["CREA"].note
    assert by["UNKNOWN:某某抗体"].status == "ungraded" and by["UNKNOWN:某某抗体"].value == 3.2
    assert by["HEIGHT"].status == "ungraded" and by["U_PRO"].status == "ungraded"
    assert by["K"].status == "normal" and not is_abnormal(by["CREA"])
    md = findings_table(fs)
    assert md.count("未判断") >= 4
    assert "未判断 4 项" in grounding_text(fs)


def test_every_table_entry_has_a_source_and_a_range_or_kind():
    from ming.safety.report import load_table

    for key, t in load_table().tests.items():
        if key in ("HEIGHT", "WEIGHT"):
            continue
        assert t.get("source"), key
        assert t.get("info") or t.get("kind") == "qualitative" or "male" in t or "high" in t or "low" in t, key


def test_row_numbers_and_neutral_name_suffixes_of_printed_tables():
    """A hospital printout numbers its rows ("12    eGFR  78 …"): the row number is not a value, so the Latin name
    after it is not read as a unit; "肾小球滤过率估算值" / "CRP测定" carry a neutral suffix before the value."""
    from ming.safety.report import parse_report

    text = ("序号  项目名称   结果   单位   参考区间\n"
            "1     ALT        68     U/L    7-40\n"
            "12    eGFR       78     mL/min/1.73m2  >90\n"
            "13    肾小球滤过率估算值 78 mL/min/1.73m2 >90\n"
            "14    CRP测定    42     mg/L   <10\n"
            "15    血糖       240    mg/dL\n")
    got = {(f.raw_name, f.key, f.value, f.status) for f in parse_report(text)}
    assert ("ALT", "ALT", 68.0, "high") in got and ("eGFR", "EGFR", 78.0, "low") in got
    assert ("CRP", "CRP", 42.0, "high") in got and any(k == "GLU" and s == "high" for _, k, _, s in got)
    assert not any(k == "MG" for _, k, _, _ in got)  # "mg" after 240 stays a unit


def test_a_test_named_twice_is_not_called_unknown():
    from ming.safety.report import parse_report

    got = parse_report("Hb: 118 g/L [115-150]\nHGB 96 g/L 参考值:115-150\n幽门螺杆菌抗体 35 U/mL\n")
    assert [(f.key, f.status) for f in got][0] == ("HGB", "normal")
    again, unknown = got[1], got[2]
    assert again.status == "ungraded" and again.value == 96 and "再次出现" in again.note
    assert unknown.status == "ungraded" and "参考表中没有这一项" in unknown.note


def test_censored_values_and_tests_the_table_does_not_know_are_graded_by_the_printed_range():
    """"<0.5" keeps its sign and is graded by where it must lie; a test the table does not know is graded by its
    printed range when there is one (the printed range wins), and listed as ungraded when there is none."""
    from ming.safety.report import parse_report

    got = {f.raw_name: f for f in parse_report("超敏C反应蛋白 <0.5 mg/L 0-3\n铁蛋白 <5 ng/mL 15-200\n"
                                               "维生素B12 <50 pg/mL 180-900\n叶酸 12.5 ng/mL 3.1-19.9\n"
                                               "幽门螺杆菌抗体 35 U/mL\n")}
    assert got["超敏C反应蛋白"].value_text == "<0.5 mg/L" and got["超敏C反应蛋白"].status == "normal"
    assert got["铁蛋白"].status == "low"  # below 5, so below 15
    assert got["维生素B12"].status == "low" and got["维生素B12"].ref_text.startswith("180–900")
    assert got["叶酸"].status == "normal" and got["叶酸"].ref_source == "报告所印参考范围"
    assert got["幽门螺杆菌抗体"].status == "ungraded" and "参考表中没有这一项" in got["幽门螺杆菌抗体"].note


def test_converted_values_are_graded_at_printed_precision_and_a_missing_unit_is_said():
    """126 mg/dL is the diabetes cut-off 7.0 mmol/L (not 6.99: 空腹血糖受损); a bare 126 read as mg/dL is not shown
    as 126 mmol/L."""
    from ming.safety.report import parse_report

    (f,) = parse_report("空腹血糖 126 mg/dL\n")
    assert f.status == "high" and "糖尿病诊断切点" in f.category and "换算为 7.0 mmol/L" in f.note
    (bare,) = parse_report("空腹血糖 126\n")
    assert "mmol" not in bare.value_text and "未写单位" in bare.value_text and "糖尿病诊断切点" in bare.category
