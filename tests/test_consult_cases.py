"""bench/consult.py on a written case file (`run --cases FILE`, the case-file `table`): rows become simpatient
cases the rule-based patient answers (sex and age as a profile finding outside coverage), and the table reports
diagnosis, differential, department and escalation. The four cases are written for this test, on the ten-disease KB."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "fixtures" / "consult_cases.jsonl"
TINY = ROOT / "tests" / "fixtures" / "kb_tiny"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("cw")
    shutil.copytree(TINY, root / "kb_tiny")
    mp = pytest.MonkeyPatch()
    mp.setenv("MING_HOME", str(root / "home"))
    mp.setenv("MING_KB", str(root / "kb_tiny"))
    spec = importlib.util.spec_from_file_location("bench_consult", ROOT / "bench" / "consult.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    try:
        yield mod, root
    finally:
        mp.undo()


def test_case_rows_become_cases_with_a_profile_finding(bench):
    mod, _ = bench
    rows = mod.load_case_file(CASES)
    case, row = rows[0]
    assert case.id == "T-1" and case.diagnosis == "阑尾炎"
    assert case.findings[-1].category == "profile" and case.findings[-1].text == "男，24岁"
    assert len(case.findings) == len(row["findings"]) + 1


def test_bad_row_names_its_line(bench, tmp_path):
    mod, _ = bench
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "chief_complaint": "头疼", "findings": []}\n{"id": "y"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="line 2"):
        mod.load_case_file(bad)


def test_run_and_table_on_a_case_file(bench, capsys):
    mod, root = bench
    out = root / "runs"
    assert mod.main(["run", "--arm", "controller", "--cases", str(CASES), "--out", str(out)]) == 0
    rows = [json.loads(x) for x in (out / "controller.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["T-1", "T-2", "T-3", "T-4"]
    assert all(r["task"] == "cases" and 0 <= r["coverage"] <= 1 for r in rows)
    t1 = rows[0]
    assert t1["red_flag_case"] and isinstance(t1["escalated"], bool)
    assert "右下腹" in t1["final_text"]  # "疼到右下边去了" is read as the right lower quadrant
    assert t1["n_findings"] == 4 and t1["differential"] == ["急性胃肠炎"]
    capsys.readouterr()
    assert mod.main(["table", str(out / "controller.jsonl"), "--detail"]) == 0
    table = capsys.readouterr().out
    assert "dx or differential in top-3" in table and "false escalation" in table
    assert "T-2" in table


def test_department_and_differential_scoring(bench):
    mod, _ = bench
    assert mod.department_hit("初步判断：…\n就诊科室：心内科、急诊科", "心血管内科/全科") is True
    assert mod.department_hit("就诊科室：消化内科", "呼吸内科") is False
    assert mod.department_hit("anything", None) is None
