"""Report formats the parser must read beyond the hand-written fixtures: OCR noise, full-width text, range styles,
qualitative and titre results, numbers for serology, sentence-typed values, critical values and how the safety
layer reacts to them. The wording here is this file's own."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ming.safety import SafetyPolicy
from ming.safety.report import clean_text, critical_notice, findings_table, grounding_text, parse_report

ROOT = Path(__file__).resolve().parent.parent


def one(text, key, sex=None):
    return next(f for f in parse_report(text, sex) if f.key == key)


def test_ocr_letters_in_numbers_are_digits():
    assert clean_text("钾 4.O2 mmol/L 3.5O-5.3O") == "钾 4.02 mmol/L 3.50-5.30"
    assert clean_text("钠 l38  l37-l47") == "钠 138  137-147"
    assert clean_text("cTnI 3.1 ng/mL O-O.O4") == "cTnI 3.1 ng/mL 0-0.04"
    assert clean_text("HCO3- 24, Cl 101, mmol/L, CO2") == "HCO3- 24, Cl 101, mmol/L, CO2"  # letters in names stay
    f = one("肌酸激酶  l2O5  U/L  5O-31O", "CK")
    assert f.value == 1205 and f.status == "high" and f.ref_high == 310


def test_full_width_and_spaced_out_text():
    f = one("总胆固醇（ＴＣ）：６．８　ｍｍｏｌ／Ｌ　＜５．２", "TC")
    assert f.value == 6.8 and f.status == "high"
    f = one("尿 素 氮   9 . 6   mmol / L", "UREA")
    assert f.value == 9.6 and f.status == "high"


@pytest.mark.parametrize("row, status", [
    ("钾 5.9 mmol/L 3.5～5.3", "high"), ("钾 5.9 mmol/L 3.5--5.3", "high"), ("钾 5.9 mmol/L (3.5—5.3)", "high"),
    ("甘油三酯 1.9 mmol/L <1.7", "high"), ("高密度脂蛋白胆固醇 0.9 mmol/L >1.04", "low"),
    ("高密度脂蛋白胆固醇 1.2 mmol/L ＞1.04", "normal"), ("尿酸 455 umol/L 参考值：150-420", "high"),
    ("ALT 145 U/L High", "high"), ("钾 3.1 mmol/L Low", "low")])
def test_range_styles_and_marks(row, status):
    assert parse_report(row)[0].status == status


def test_names_given_twice_and_unknown_abbreviations():
    assert one("总T3 TT3   2.05 nmol/L  1.30-3.10", "TT3").status == "normal"  # not "a number then a unit T3"
    f = one("尿常规\n葡萄糖 GLU   (+)   阴性", "U_GLU")
    assert f.status == "abnormal"
    assert one("尿常规\n胆红素 BIL   阴性", "U_BIL").status == "normal"
    assert one("尿糖 GLU ++ ", "U_GLU").status == "abnormal"  # the first name decides: urine, not blood glucose


def test_one_line_lists_and_english_urinalysis():
    keys = {f.key: f.value for f in parse_report("血常规 WBC 6.8 RBC 4.9 HGB 151 PLT 233 正常吗")}
    assert keys == {"WBC": 6.8, "RBC": 4.9, "HGB": 151, "PLT": 233}  # a name after a value is no unit
    ua = {f.key: f.status for f in parse_report("Urinalysis: protein 1+, glucose negative, nitrite positive, ketones negative")}
    assert ua == {"U_PRO": "abnormal", "U_GLU": "normal", "U_NIT": "abnormal", "U_KET": "normal"}
    urine = {f.key: f for f in parse_report("尿常规 WBC 320/uL RBC 18/uL")}
    assert set(urine) == {"U_WBC", "U_RBC"} and not any(f.critical for f in urine.values())  # not a blood count of 0.32
    assert parse_report("血糖 阴性") == []  # a word is no value for a blood glucose
    assert one("24小时尿蛋白1.8g", "U_PRO24").status == "high"  # no unit: grams, not read as milligrams


def test_sentence_typed_values():
    keys = {f.key: f for f in parse_report("空腹6.9，餐后两小时12.3，糖化7.1，空腹8小时后抽的血")}
    assert keys["GLU"].value == 6.9 and keys["PBG"].value == 12.3 and keys["HBA1C"].value == 7.1
    assert one("上周查尿hCG报告上写着阳性", "HCG").category == "阳性"
    assert one("血小板才9万，医生让复查", "PLT").value == 90
    assert one("fasting glucose 7.4 mmol/L, creatinine 1.6 mg/dL", "CREA").status == "high"


def test_qualitative_words_and_counts():
    f = one("尿常规：白细胞 3+ 阴性，红细胞（镜检） 满视野 /HP 0-3，颗粒管型 1-2 /LP", "U_RBC")
    assert f.status == "high" and f.value == "满视野"
    assert one("尿常规：白细胞 3+ 阴性，红细胞（镜检） 满视野 /HP 0-3，颗粒管型 1-2 /LP", "U_CAST").status == "high"
    f = one("尿沉渣：镜检白细胞 20-25 个/HP 0-5", "U_WBC")
    assert f.value == 25 and f.value_low == 20 and f.value_text.startswith("20-25") and f.status == "high"
    stool = {f.key: f for f in parse_report("粪便常规：白细胞 未见，红细胞 未见，隐血试验 阳性，虫卵 未检出")}
    assert stool["F_OB"].status == "abnormal" and stool["F_WBC"].status == "normal" and stool["F_OVA"].status == "normal"


def test_titres():
    assert one("RPR 1:16", "RPR").category == "阳性"
    assert one("抗核抗体 1:80 (<1:100)", "ANA").category == "阴性"
    assert one("抗核抗体 1:320 (<1:100)", "ANA").category == "阳性"


def test_numbers_for_serology():
    f = one("乙肝表面抗体 HBsAb  212.5  mIU/mL  阳性", "HBSAB")
    assert f.category == "阳性" and f.status == "normal"  # protective
    assert one("HBsAg  1520  IU/mL  (<0.05)", "HBSAG").category == "阳性"
    assert one("HBeAb  2.3  S/CO  (>1.0)", "HBEAB").category == "阴性"  # a competitive assay: above 1.0 is negative
    assert one("丙肝抗体 0.05 S/CO", "HCVAB").category == "阴性"  # the table's cut-off (S/CO 1.0)
    assert one("HBV-DNA <20 IU/mL", "HBVDNA").category == "阴性"  # below what the lab detects


def test_pregnancy_ranges_apply_only_when_no_range_is_printed():
    assert one("孕28周，白细胞 13.2", "WBC").status == "normal"
    assert one("备孕中，白细胞 13.2", "WBC").status == "high"
    assert one("孕28周，白细胞 13.2 ×10^9/L 3.5-9.5", "WBC").status == "high"
    assert one("怀孕7个月，血红蛋白 108 g/L", "HGB").status == "low"


def test_sex_from_the_person_the_report_is_about():
    assert one("我爸的血常规：血红蛋白 124 g/L", "HGB").status == "low"  # men from 130
    assert one("我妈的血常规：血红蛋白 124 g/L", "HGB").status == "normal"  # women from 115
    assert one("血红蛋白 124 g/L", "HGB").status == "normal"  # unknown: the combined range
    assert one("孕30周 肌酐 80 umol/L", "CREA").status == "high"  # women up to 73


def test_units_guessed_when_none_is_written():
    assert one("血红蛋白 8.4", "HGB").status == "low" and "g/dl" in one("血红蛋白 8.4", "HGB").note
    assert not one("血红蛋白 11.9", "HGB").critical  # 119 g/L read from g/dL, not a critical 11.9 g/L


@pytest.mark.parametrize("text, key", [
    ("钾 6.6 mmol/L", "K"), ("血钾2.4", "K"), ("Na 117", "NA"), ("血红蛋白 48 g/L", "HGB"), ("PLT 12", "PLT"),
    ("血糖 1.9 mmol/L", "GLU"), ("INR 5.3", "INR"), ("纤维蛋白原 0.7 g/L", "FIB"), ("乳酸 5.2 mmol/L", "LAC"),
    ("血气 pH 7.09", "PH_BLOOD"), ("cTnI 2.4 ng/mL", "HSTNI"), ("中性粒细胞绝对值 0.3", "NEUT_ABS")])
def test_critical_values(text, key):
    f = one(text, key)
    assert f.critical.startswith("危急值") and f.status in ("high", "low")


def test_not_critical():
    for text in ("钾 5.6 mmol/L", "血红蛋白 72 g/L", "血小板 45", "INR 2.6", "肌钙蛋白T 0.02 ng/mL", "血糖 15.2"):
        assert not any(f.critical for f in parse_report(text)), text
    # expected in a known chronic state: a creatinine of 900 on dialysis is not news, a potassium of 6.5 still is
    fs = {f.key: f for f in parse_report("透析两年了，肌酐 905 umol/L，钾 6.5 mmol/L")}
    assert not fs["CREA"].critical and fs["K"].critical
    assert one("肌酐 905 umol/L", "CREA").critical
    # a lab's own critical mark is kept even inside the table's limits
    assert one("钾 2.9 mmol/L ↓ 3.5-5.3 危急值", "K").critical == "报告标注危急值"


def test_critical_values_are_impossible_to_miss():
    fs = parse_report("复查：钾 6.9 mmol/L ↑ 3.5-5.3，肌酐 180 umol/L")
    assert "危急值" in critical_notice(fs) and "钾 6.9" in critical_notice(fs)
    assert "⚠️危急值" in findings_table(fs)
    assert "回答第一句必须先指出这是危急值" in grounding_text(fs)
    assert "危急值" in grounding_text(fs, short=True)
    assert critical_notice(parse_report("钾 4.6 mmol/L")) == ""


@pytest.mark.parametrize("text", ["K 6.8", "血红蛋白55 g/L，要紧吗", "化验单上钾 6.8 mmol/L ↑ 3.5-5.3"])
def test_safety_layer_escalates_a_critical_value(text):
    d = SafetyPolicy(mode="on").check([{"role": "user", "content": text}])
    assert d.action == "escalate" and "REPORT-CRITICAL" in d.rule_ids and d.call_model
    assert d.prefix.startswith("⚠️ **危急值") and d.to_dict()["emergency"]
    assert d.findings_table  # the table follows the notice
    strict = SafetyPolicy(mode="strict").check([{"role": "user", "content": text}])
    assert strict.action == "escalate" and not strict.call_model


def test_no_escalation_without_a_critical_value():
    d = SafetyPolicy(mode="on").check([{"role": "user", "content": "体检：钾 5.5 mmol/L ↑ 3.5-5.3，血红蛋白 128 g/L"}])
    assert d.action == "answer" and "REPORT-CRITICAL" not in d.rule_ids and not d.prefix


def test_bench_on_its_fixture():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "lab_reports.py")], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "item recall          1.000" in out and "critical recall      1.000" in out
    rows = [json.loads(x) for x in (ROOT / "tests" / "fixtures" / "safety" / "lab_labelled.jsonl").read_text().splitlines()]
    assert len(rows) >= 10
