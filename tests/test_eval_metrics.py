"""Accuracy intervals, character ROUGE-L / BLEU, and the paired significance tests."""

import pytest

from ming.eval import metrics as m


def test_wilson_known_values():
    lo, hi = m.wilson_ci(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert m.wilson_ci(0, 10)[0] == 0.0 and m.wilson_ci(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert m.wilson_ci(10, 10)[1] == 1.0
    assert m.wilson_ci(0, 0) == (0.0, 0.0)


def test_accuracy_by_group():
    rows = [{"subject": "a", "correct": True}, {"subject": "a", "correct": False}, {"correct": True}]
    g = m.accuracy_by(rows, "subject")
    assert g["a"]["accuracy"] == 0.5 and g["-"]["n"] == 1


def test_rouge_l_on_characters():
    assert m.rouge_l("多喝水注意休息", "多喝水注意休息")["f"] == pytest.approx(1.0)
    r = m.rouge_l("多喝水", "多喝水注意休息")
    assert r["p"] == 1.0 and r["r"] == pytest.approx(3 / 7)
    assert m.rouge_l("", "abc")["f"] == 0.0
    assert m.chars("Take 2 pills 每天") == ["take", "2", "pills", "每", "天"]


def test_bleu():
    assert m.bleu("多喝水，注意休息", "多喝水，注意休息") == pytest.approx(1.0)
    short = m.bleu("多喝水", "多喝水，注意休息")
    assert 0 < short < 0.5  # brevity penalty
    assert m.bleu("完全无关", "多喝水") == 0.0


def test_mcnemar_exact():
    a = [True] * 10 + [False] * 10
    b = [False] * 10 + [False] * 10
    r = m.mcnemar(a, b)
    assert r["only_a"] == 10 and r["only_b"] == 0 and r["p"] == pytest.approx(2 / 1024)
    assert m.mcnemar([True, False], [True, False])["p"] == 1.0


def test_paired_bootstrap():
    a = [0.1] * 50
    b = [0.9] * 50
    r = m.paired_bootstrap(a, b)
    assert r["delta"] == pytest.approx(0.8) and r["p"] < 0.01
    same = m.paired_bootstrap([0.5, 0.6, 0.4], [0.5, 0.6, 0.4])
    assert same["delta"] == 0 and same["p"] == 1.0


def test_bootstrap_ci_contains_mean():
    vals = [0, 1] * 50
    lo, hi = m.bootstrap_ci(vals)
    assert lo < 0.5 < hi
