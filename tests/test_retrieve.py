"""Passage retrieval with sources over a five-disease fixture KB (hand-written, medical_kg schema)."""

from pathlib import Path

import pytest

from ming.kb import load_kb
from ming.retrieve import Index, bigrams, citation_line, context_text, kb_passages, load_index, qa_passages

FIX = Path(__file__).resolve().parent / "fixtures" / "grounding"


@pytest.fixture()
def index(tmp_path, monkeypatch):
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    idx = load_index(sources=[("kg", FIX / "kg"), ("问答·测试", FIX / "qa.jsonl")], log=lambda m: None)
    idx.min_score = 2.0  # BM25 scores scale with the corpus; seven passages give small idf
    return idx


def test_kb_passages_carry_relations_and_source_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    ps = kb_passages(load_kb(FIX / "kg", log=lambda m: None))
    assert sorted(p.title for p in ps) == ["2型糖尿病", "上呼吸道感染", "急性阑尾炎", "痤疮", "缺铁性贫血"]  # no symptom rows
    p = next(p for p in ps if p.title == "急性阑尾炎")
    assert p.source == "知识库·急性阑尾炎" and "常见症状：右下腹痛" in p.text and "就诊科室：普外科" in p.text


def test_search_finds_the_named_disease_first(index):
    hits = index.search("右下腹疼痛伴发热，是不是阑尾炎？", k=2)
    assert hits[0].passage.source == "知识库·急性阑尾炎"
    assert citation_line(hits).startswith("参考：知识库·急性阑尾炎")


def test_search_uses_qa_passages_and_symptoms(index):
    top = [h.passage.source for h in index.search("感冒流涕咽痛要吃抗生素吗", k=2)]
    assert set(top) == {"知识库·上呼吸道感染", "问答·测试#qa-1"}


def test_unrelated_question_gets_nothing(index):
    assert index.search("今天股票涨了吗", k=3) == []
    assert context_text([]) == "" and citation_line([]) == ""


def test_context_text_is_numbered_with_sources_and_bounded(index):
    hits = index.search("乏力头晕面色苍白，血清铁蛋白低", k=3)
    text = context_text(hits, max_chars=80)
    assert text.splitlines()[1].startswith("[1] 知识库·缺铁性贫血：")
    assert sum(len(x) for x in text.splitlines()[1:]) < 80 + 40 * len(hits)


def test_index_is_saved_under_ming_home_and_reloaded(tmp_path, monkeypatch):
    from ming import retrieve

    monkeypatch.setenv("MING_HOME", str(tmp_path))
    retrieve._LOADED.clear()
    srcs = [("kg", FIX / "kg")]
    logs = []
    a = load_index(sources=srcs, log=logs.append)
    built = [m for m in logs if m.startswith("indexed 5 passages")]
    assert len(built) == 1 and list((tmp_path / "retrieval").glob("index-*.npz"))
    retrieve._LOADED.clear()
    b = load_index(sources=srcs, log=logs.append)
    assert [m for m in logs if m.startswith("indexed")] == built  # read back, not rebuilt
    assert [p.title for p in b.passages] == [p.title for p in a.passages]


def test_bigrams_drop_punctuation_and_stop_grams():
    assert bigrams("阑尾炎？") == ["阑尾", "尾炎"]
    assert "请问" not in bigrams("请问阑尾炎")


def test_qa_passages_and_build(tmp_path):
    ps = qa_passages(FIX / "qa.jsonl", "问答·测试")
    assert ps[0].source == "问答·测试#qa-1" and ps[0].text.startswith("问：感冒了需要吃抗生素吗？")
    idx = Index.build(ps)
    assert idx.weights.shape[0] == 2


def test_kb_passages_leave_out_garbled_and_empty_entries():
    from types import SimpleNamespace

    kb = SimpleNamespace(diseases={"急性阑尾炎": {"desc": "阑尾的急性炎症。", "symptoms": ["右下腹痛"], "checks": [],
                                               "departments": ["普外科"], "drugs": []},
                                   "无描述病": {"desc": ""}, "Ã·¶¾": {"desc": "乱码"}})
    ps = kb_passages(kb)
    assert [p.source for p in ps] == ["知识库·急性阑尾炎"]
    assert ps[0].text == "急性阑尾炎：阑尾的急性炎症。；常见症状：右下腹痛；就诊科室：普外科"
