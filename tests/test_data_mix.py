"""Mix planning (category shares exact, shortfalls redistributed), seeded streaming selection, shuffling."""

import random

import orjson

from ming.data.mix import BucketShuffler, dumps, line_id, plan_mix, select_file, water_fill
from ming.data.records import make_record
from ming.data.recipe import parse_recipe


def recipe(total="auto", upsample=1.0, cap=None):
    return parse_recipe({"total": total, "subsets": {
        "a": {"category": "knowledge_qa", "weight": 50, "sources": [{"name": "a1", "kind": "exam_mcq", "paths": ["x"]},
                                                                    {"name": "a2", "kind": "exam_mcq", "paths": ["y"],
                                                                     "cap": cap}]},
        "b": {"category": "knowledge_qa", "weight": 50, "sources": [{"name": "b1", "kind": "doctor_qa", "paths": ["x"]}]},
        "c": {"category": "safety", "weight": 25, "max_upsample": upsample,
              "sources": [{"name": "c1", "kind": "safety", "paths": ["x"]}]}}})


def test_water_fill_redistributes_and_respects_limits():
    assert water_fill(100, {"x": 1, "y": 1}, {"x": 10, "y": 1000}) == {"x": 10, "y": 90}
    assert water_fill(100, {"x": 1, "y": 3}, {"x": 1000, "y": 1000}) == {"x": 25, "y": 75}
    assert sum(water_fill(7, {"x": 1, "y": 1, "z": 1}, {"x": 9, "y": 9, "z": 9}).values()) == 7
    assert water_fill(100, {"x": 1}, {"x": 30}) == {"x": 30}


def test_auto_total_meets_category_shares_and_fills_sibling_shortfall():
    avail = {"a": {"a1": 1000, "a2": 1000}, "b": {"b1": 10}, "c": {"c1": 50}}
    p = plan_mix(recipe(), avail)
    # safety has 50 records for a 20% share -> total 250; knowledge_qa 200 = a 190 + b 10 (b short, a fills)
    assert p.total == 250 and p.binding == "safety"
    assert p.categories["knowledge_qa"]["planned"] == 200 and p.categories["safety"]["planned"] == 50
    assert p.subsets["b"].planned == 10 and p.subsets["b"].nominal == 100 and p.subsets["a"].planned == 190
    assert sum(p.subsets["a"].sources.values()) == 190


def test_caps_upsampling_and_fixed_total():
    avail = {"a": {"a1": 1000, "a2": 1000}, "b": {"b1": 1000}, "c": {"c1": 50}}
    p = plan_mix(recipe(total=500, upsample=3.0, cap=20), avail)
    assert p.total == 500 and p.subsets["c"].planned == 100  # 2x repeats allowed by max_upsample
    assert p.subsets["a"].sources["a2"] <= 20


def test_select_file_exact_k_seeded_and_repeats(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text("".join(f"{i}\n" for i in range(100)))
    a = [line for _, line in select_file(f, 100, 30, random.Random(1))]
    b = [line for _, line in select_file(f, 100, 30, random.Random(1))]
    c = [line for _, line in select_file(f, 100, 30, random.Random(2))]
    assert len(a) == 30 and len(set(a)) == 30 and a == b and a != c
    reps = list(select_file(f, 100, 250, random.Random(1)))
    assert len(reps) == 250 and sum(1 for r, _ in reps if r == 0) == 100 and max(r for r, _ in reps) == 2


def test_bucket_shuffler_keeps_every_line(tmp_path):
    sh = BucketShuffler(tmp_path / "b", 4, random.Random(3))
    for i in range(1000):
        sh.add(f"{i}\n")
    out = list(sh)
    want = [f"{i}\n".encode() for i in range(1000)]
    assert sorted(out, key=int) == want and out != want


def test_line_id_reads_the_id_of_any_record_line():
    """The dev split reads a record's id straight from its line when it can; every id, plain or not, comes out as
    parsing the line gives it."""
    ids = ["gen-0123abcd", 'quote"d', "back\\slash", "tail\\", "中文-id", "tab\tid", "#r1"]
    for rid in ids:
        line = dumps(make_record(source="s", messages=[{"role": "user", "content": "x"}], id=rid))
        assert line_id(line) == orjson.loads(line)["id"] == rid
        assert line_id(b"0123456789abcdef01234567\t" + line, 25) == rid  # after a spill head
    other = orjson.dumps({"source": "s", "id": "later"})  # not written by dumps(make_record): parsed
    assert line_id(other) == "later"


def test_randbelow_many_draws_what_randrange_draws_and_leaves_the_same_state():
    from ming.data.mix import randbelow_many

    for n in (1, 2, 3, 23, 24, 32, 33, 1000, 2**31 - 1, 2**32 - 1, 2**32):
        for count in (0, 1, 7, 5000):
            a, b = random.Random(f"s{n}"), random.Random(f"s{n}")
            want = [a.randrange(n) for _ in range(count)]
            assert randbelow_many(b, n, count).tolist() == want, (n, count)
            assert a.getstate() == b.getstate() and a.random() == b.random(), (n, count)


def test_bucket_shuffler_add_many_is_add_of_each(tmp_path):
    lines = [dumps({"id": str(i), "x": "y" * (i % 7)}) for i in range(3000)]
    one, many = BucketShuffler(tmp_path / "a", 5, random.Random(9)), BucketShuffler(tmp_path / "b", 5, random.Random(9))
    for line in lines:
        one.add(line)
    many.add_many(lines[:1000])
    many.add_many(lines[1000:])
    assert list(one) == [line for bucket in many.buckets() for line in bucket]
