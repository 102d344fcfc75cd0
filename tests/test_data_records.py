"""The shared record schema and its readers (ours, ShareGPT, Alpaca; JSONL, JSON arrays, CSV; UTF-8 and GBK)."""

import json
from pathlib import Path

from ming.data.records import (CATEGORIES, ErrorLog, detect_format, iter_records, to_record, validate_record)
from ming.data.rawio import iter_rows

RAW = Path(__file__).parent / "fixtures" / "data" / "raw"


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_categories_are_mings_four_parts():
    assert CATEGORIES == ("knowledge_qa", "multiturn_diagnosis", "instruction", "safety")


def test_validate_record_accepts_alternating_and_rejects_broken():
    good = {"id": "a", "source": "s", "category": "safety", "subset": "x",
            "messages": msgs(("system", "你是医生"), ("user", "头痛"), ("assistant", "多休息"))}
    assert validate_record(good) == []
    assert any("alternate" in p for p in validate_record({**good, "messages": msgs(("user", "a"), ("user", "b"))}))
    assert any("last message" in p for p in validate_record({**good, "messages": msgs(("user", "a"))}))
    assert validate_record({**good, "messages": msgs(("user", "a"))}, training=False) == []
    assert any("empty" in p for p in validate_record({**good, "messages": msgs(("user", " "), ("assistant", "b"))}))
    assert any("category" in p for p in validate_record({**good, "category": "other"}))
    assert any("'id'" in p for p in validate_record({**good, "id": ""}))


def test_sharegpt_and_alpaca_are_detected_and_converted():
    sg = {"conversations": [{"from": "human", "value": "咳嗽怎么办"}, {"from": "gpt", "value": "多喝水"}],
          "system": "你是医生"}
    al = {"instruction": "翻译", "input": "你好", "output": "Hello", "history": [["早", "早上好"]]}
    assert detect_format(sg) == "sharegpt" and detect_format(al) == "alpaca"
    r = to_record(sg)
    assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
    r = to_record(al)
    assert [m["content"] for m in r["messages"]] == ["早", "早上好", "翻译\n\n你好", "Hello"]
    assert validate_record(r) == []


def test_iter_records_reports_bad_lines_with_file_and_line(tmp_path):
    f = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"id": "1", "source": "s", "messages": msgs(("user", "问"), ("assistant", "答"))},
                        ensure_ascii=False),
             "{not json",
             json.dumps({"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": "答"}]}),
             json.dumps({"instruction": "写诗", "input": "", "output": "春眠不觉晓"}, ensure_ascii=False),
             json.dumps({"foo": 1}),
             json.dumps({"conversations": [{"from": "human", "value": "问"}]})]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = ErrorLog()
    recs = list(iter_records(f, errors=errors))
    assert len(recs) == 3
    assert errors.n_errors == 3
    assert any(e.startswith(f"{f}:2: malformed JSON") for e in errors.examples)
    assert any(e.startswith(f"{f}:5:") and "unknown format" in e for e in errors.examples)
    assert any(e.startswith(f"{f}:6:") and "last message" in e for e in errors.examples)


def test_gbk_lines_are_decoded_and_counted_undecodable_lines_skipped():
    errors = ErrorLog()
    rows = list(iter_rows(RAW / "doctor_qa_gbk.jsonl", errors=errors))
    assert [r["id"] for _, r in rows] == ["qa-1", "qa-2", "qa-3"]
    assert "糖耐量" in rows[0][1]["answer"]
    assert errors.warnings["not UTF-8; decoded as GB18030/GBK"] == 3
    assert errors.errors and list(errors.examples)[0].endswith("doctor_qa_gbk.jsonl:2: undecodable bytes "
                                                                "(neither UTF-8 nor GB18030)")
    strict = ErrorLog()
    assert list(iter_rows(RAW / "doctor_qa_gbk.jsonl", errors=strict, encoding="utf-8")) == []
    assert strict.n_errors == 4


def test_gbk_csv_and_json_array(tmp_path):
    errors = ErrorLog()
    rows = list(iter_rows(RAW / "doctor_qa_gbk.csv", errors=errors))
    assert len(rows) == 3 and rows[0][1]["department"] == "内分泌科"
    assert errors.warnings
    arr = tmp_path / "alpaca.json"
    arr.write_text(json.dumps([{"instruction": "a", "output": "b"}, 3]), encoding="utf-8")
    errors = ErrorLog()
    recs = list(iter_records(arr, errors=errors))
    assert len(recs) == 1 and errors.n_errors == 1 and errors.examples[0].endswith("alpaca.json:2: item is a JSON "
                                                                                   "int, expected an object")


def test_the_quick_validity_test_passes_only_records_without_problems():
    """`validate_record` answers the common valid record with a quick test and everything else with the full
    check: the quick test must never pass a record the full check finds a problem with, and must pass the
    ordinary ones."""
    import random

    from ming.data.records import _plainly_valid, _problems

    rng = random.Random(5)
    roles = ["system", "user", "assistant", "tool", None]
    contents = ["头痛", " ", "", None, 3, "answer"]
    passed = 0
    for _ in range(20000):
        msgs = [rng.choice([{"role": rng.choice(roles), "content": rng.choice(contents)}, "x",
                            {"role": "user"}]) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.5:  # a well-formed conversation, sometimes
            msgs = ([{"role": "system", "content": "s"}] if rng.random() < 0.3 else []) + [
                {"role": r, "content": "话"} for r in ["user", "assistant"] * rng.randint(1, 3)][:rng.randint(1, 6)]
        rec = {"id": rng.choice(["a", "", None, 1]), "source": rng.choice(["s", "", None]), "messages": msgs,
               "category": rng.choice(["safety", "", None, "other"])}
        if rng.random() < 0.2:
            rec["meta"] = rng.choice([{}, [], "m"])
        if rng.random() < 0.1:
            rec["messages"] = rng.choice([None, "x", []])
        for training in (True, False):
            for require in (True, False):
                if _plainly_valid(rec, training, require):
                    passed += 1
                    assert _problems(rec, training, require) == [], rec
    assert passed > 1000
