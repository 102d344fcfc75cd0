"""The knowledge base: index build and staleness, licence, symptom normalisation and negation,
synonym-aware disease matching. Uses tests/fixtures/kb_tiny (ten diseases, medical_kg schema); the
checks against the real medical_kg are skipped when the data folder is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ming import envs
from ming.cli.main import main
from ming.errors import MingError
from ming.kb import build_index, index_path, kb_source, load_kb
from ming.kb.symptoms import Lexicon, read_table

TINY = Path(__file__).parent / "fixtures" / "kb_tiny"


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    src = tmp_path / "kb_tiny"
    shutil.copytree(TINY, src)
    monkeypatch.setenv("MING_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MING_KB", raising=False)
    return src


COLLOQUIAL = [("肚子疼", "腹痛"), ("拉肚子", "腹泻"), ("发烧", "发热"), ("嗓子疼", "咽痛"), ("头疼", "头痛"),
              ("想吐", "恶心"), ("喘不上气", "呼吸困难"), ("心慌", "心悸"), ("流鼻涕", "流涕"), ("睡不着", "失眠"),
              ("腿肿", "下肢水肿"), ("按着更疼", "压痛"), ("松手更疼", "反跳痛"), ("没胃口", "食欲不振"),
              ("小便疼", "尿痛"), ("右下腹疼", "右下腹痛"), ("高烧", "高热")]


@pytest.mark.parametrize("surface,canonical", COLLOQUIAL)
def test_colloquial_forms_map_to_canonical_symptoms(surface, canonical):
    lex = Lexicon.build()
    assert lex.normalise(surface) == canonical
    assert [m.canonical for m in lex.mentions(f"我{surface}两天了")] == [canonical]


def test_broader_symptoms_and_kb_names_inside_names():
    lex = Lexicon.build(["发热伴寒战", "下腹部压痛", "腹痛"])
    assert lex.expand("右下腹痛") == {"右下腹痛", "下腹痛", "腹痛"}  # right lower quadrant is lower abdomen
    assert lex.expand("高热") == {"高热", "发热"}
    assert {"发热", "寒战"} <= lex.concepts_in("发热伴寒战")
    assert {"下腹部压痛", "压痛"} <= lex.concepts_in("下腹部压痛")


@pytest.mark.parametrize("text,expected", [
    ("不发烧", {"发热": "absent"}),
    ("没有呕吐", {"呕吐": "absent"}),
    ("也没有呕吐和拉肚子", {"呕吐": "absent", "腹泻": "absent"}),
    ("嗓子疼，咳嗽但不发烧", {"咽痛": "present", "咳嗽": "present", "发热": "absent"}),
    ("不发烧但是一直咳嗽", {"发热": "absent", "咳嗽": "present"}),
    ("不知道有没有发烧", {"发热": "uncertain"}),
    ("食欲不振，没有腹泻", {"食欲不振": "present", "腹泻": "absent"}),
    ("肚子一直疼，腿也肿了", {"腹痛": "present", "下肢水肿": "present"}),
    ("发烧不退", {"发热": "present"}),
])
def test_negation_and_uncertainty(text, expected):
    got = {m.canonical: m.polarity for m in Lexicon.build().mentions(text)}
    assert got == expected


def test_table_rows_are_well_formed_and_malformed_rows_name_their_line(tmp_path):
    surfaces, broader, sha = read_table()
    assert len(surfaces) > 150 and len(sha) == 64
    assert all(b in set(surfaces.values()) for bs in broader.values() for b in bs)
    bad = tmp_path / "t.tsv"
    bad.write_text("肚子疼\t腹痛\n只有一列\n", encoding="utf-8")
    with pytest.raises(MingError, match="line 2"):
        read_table(bad)


def test_build_index_counts_licence_aliases_and_reports_bad_lines(tiny):
    rep = build_index(kb_source(tiny))
    assert rep.counts["diseases"] == 10
    assert rep.n_problems == 1 and "entities.jsonl:" in rep.problems[0] and "not JSON" in rep.problems[0]
    assert rep.index == index_path(kb_source(tiny)) and str(rep.index).startswith(str(envs.ming_home()))
    kb = load_kb(tiny, build=False)
    assert kb.licence.startswith("CC0")
    d = kb.disease("阑尾炎")
    assert d["aliases"] == ["盲肠炎"] and "血常规" in d["checks"] and "普外科" in d["departments"]
    assert {"右下腹痛", "腹痛", "发热", "恶心", "呕吐"} <= set(d["concepts"])  # 持续性发热 → 发热; 恶心与呕吐 → both
    assert "阑尾炎" in kb.diseases_with("发热") and "感冒" in kb.diseases_with("发热")  # 发烧 in the KB → 发热
    assert kb.disease("小儿腹泻")["groups"] == ["child"] and kb.disease("盆腔炎")["groups"] == ["female"]


def test_stale_index_is_rebuilt_or_refused(tiny):
    with pytest.raises(MingError, match="ming kb build"):
        load_kb(tiny, build=False)
    msgs = []
    kb = load_kb(tiny, log=msgs.append)
    assert "no index yet" in msgs[0] and kb.disease("感冒")
    with (tiny / "triples.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"head": "感冒", "relation": "has_symptom", "tail": "打喷嚏"}\n')
    os.utime(tiny / "triples.jsonl", ns=(1, 1))
    with pytest.raises(MingError, match="triples.jsonl changed"):
        load_kb(tiny, build=False)
    kb2 = load_kb(tiny, log=msgs.append)
    assert "喷嚏" in kb2.disease("感冒")["concepts"]


def test_ming_kb_env_and_flag_choose_the_folder(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("MING_KB", str(tiny))
    assert kb_source() == tiny.resolve()
    assert kb_source(TINY) == TINY.resolve()
    monkeypatch.setenv("MING_KB", str(tmp_path / "nowhere"))
    with pytest.raises(MingError, match="lacks entities.jsonl"):
        kb_source()


def test_cli_build_info_symptoms_and_consult(tiny, capsys):
    assert main(["kb", "--kb", str(tiny), "build"]) == 0
    out = capsys.readouterr().out
    assert "licence (upstream): CC0" in out and "10 diseases" in out and "1 bad source line" in out
    assert main(["kb", "--kb", str(tiny), "info"]) == 0
    out = capsys.readouterr().out
    assert "up to date" in out and "licence:  CC0" in out
    assert main(["kb", "--kb", str(tiny), "symptoms", "拉肚子，不发烧"]) == 0
    out = capsys.readouterr().out
    assert "拉肚子\t→ 腹泻\tpresent" in out and "发烧\t→ 发热\tabsent" in out
    assert main(["kb", "--kb", str(tiny), "consult", "我肚子疼两天了", "在右下腹，按着更疼，有点发烧"]) == 0
    out = capsys.readouterr().out
    assert "[ask]" in out and "[escalate]" in out and "阑尾炎" in out
    assert main(["kb", "--kb", str(tiny), "disease", "没有这个病"]) == 2


def test_disease_names_in_text_and_synonym_aware_match(tiny):
    kb = load_kb(tiny, log=lambda m: None)
    assert kb.diseases_in("诊断：盲肠炎，或者急性胃肠炎") == ["阑尾炎", "急性胃肠炎"]
    assert kb.same_disease("阑尾炎", "急性盲肠炎可能")
    assert kb.same_disease("流行性感冒", "流感")
    assert kb.same_disease("感冒", "考虑感冒")
    assert not kb.same_disease("感冒", "尿路感染")


REAL = envs.data_dir() and (envs.data_dir() / "medical_kg" / "triples.jsonl").is_file()


@pytest.mark.skipif(not REAL, reason="shared/data/medical_kg not present")
def test_real_kb_knows_the_canonical_names_of_the_colloquial_table(tmp_path, monkeypatch):
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    kb = load_kb(envs.data_dir() / "medical_kg", log=lambda m: None)
    assert len(kb.diseases) > 8000 and "请勿商用" in kb.licence
    for surface, canonical in COLLOQUIAL:
        assert kb.diseases_with(canonical), f"{surface} → {canonical}: no disease in the KB lists it"


@pytest.mark.parametrize("people,groups", [
    ("好发于婴幼儿", ["child"]), ("常见于15岁以下的儿童", ["child"]), ("儿童", ["child"]), ("好发于儿童及青少年", ["child"]),
    ("多见于老年人", ["elderly"]), ("女性", ["female"]), ("好发于中老年男性", ["elderly", "male"]), ("男性多于女性", []),
    ("妊娠期女性", ["female", "pregnancy"]), ("无特定人群", []), ("多见于女性和儿童 老年人", []), ("", []),
])
def test_who_a_disease_mostly_affects_is_read_from_its_people_text(people, groups):
    from ming.kb.build import people_groups

    assert people_groups(people) == groups


def test_name_kinds_and_the_common_table(tmp_path):
    from ming.kb.build import name_kinds
    from ming.kb.store import common_tiers

    assert name_kinds("不动杆菌肺炎", ["内科"]) == ["pathogen"]
    assert set(name_kinds("Brenneman综合征", ["内科"])) == {"eponym", "syndrome"}
    assert name_kinds("伤食泄泻", ["中医科", "中医综合"]) == ["tcm"] and name_kinds("感冒", ["内科"]) == []
    assert name_kinds("外伤后头痛", ["外科"]) == ["injury"] and name_kinds("伤风", ["中医科"]) == ["tcm"]
    tiers = common_tiers()
    assert tiers["感冒"] == 1 and tiers["阑尾炎"] == 2 and set(tiers.values()) == {1, 2, 3}
    bad = tmp_path / "c.tsv"
    bad.write_text("# name\ttier\n感冒\t1\n阑尾炎\tcommon\n", encoding="utf-8")
    with pytest.raises(MingError, match="line 3"):
        common_tiers(bad)
