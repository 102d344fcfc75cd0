"""Exact and near-duplicate detection (datasketch MinHash/LSH) and eval decontamination."""

import pytest

from ming.data.dedup import (EvalIndex, ExactDeduper, MinHasher, NearDeduper, bloom_available, norm_for_hash,
                             record_hash)

TEXT = ("糖耐量受损是由正常血糖向糖尿病过渡的异常糖代谢状态，主要表现为餐后血糖升高。建议控制饮食、规律运动，"
        "每三到六个月复查一次血糖，必要时在医生指导下用药。糖耐量受损的人群今后发展为2型糖尿病的风险明显增高，"
        "同时心脑血管疾病的风险也会增加，因此要尽早干预：减轻体重、戒烟限酒、保证睡眠，并监测血压和血脂。")


def rec(user, assistant="好的，建议就医。"):
    return {"id": "x", "source": "s", "messages": [{"role": "user", "content": user},
                                                   {"role": "assistant", "content": assistant}]}


def test_normalisation_makes_trivial_variants_exact_duplicates():
    assert norm_for_hash("Ｈｅｌｌｏ，世界！ 你好") == "hello世界你好"
    assert record_hash(rec("头痛怎么办？")) == record_hash(rec("头痛 怎么办?"))
    assert record_hash(rec("头痛怎么办？")) != record_hash(rec("头晕怎么办？"))


BACKENDS = ["set", "memory", "bloom"]


@pytest.mark.parametrize("backend", ["set"] + (["bloom"] if bloom_available() else []))
def test_exact_deduper(backend):
    d = ExactDeduper(capacity=1000, backend=backend)
    assert [d.seen_or_add(h) for h in (1, 2, 1, 3, 2)] == [False, False, True, False, True]


@pytest.mark.parametrize("backend", ["memory"] + (["bloom"] if bloom_available() else []))
def test_near_duplicates_found_distinct_texts_kept(backend):
    h = MinHasher(num_perm=128, ngram=5)
    near = NearDeduper(threshold=0.8, num_perm=128, capacity=1000, backend=backend)
    variant = TEXT.replace("三到六个月", "三至六个月")  # one word changed
    other = "骨折是骨的完整性和连续性中断，多由外伤引起，需要拍X线片明确诊断，并根据骨折类型选择复位和固定方法。"
    assert near.is_dup_or_add(h(TEXT)) is False
    assert near.is_dup_or_add(h(variant)) is True
    assert near.is_dup_or_add(h(other)) is False
    assert h.jaccard(h(TEXT), h(variant)) >= 0.8 > h.jaccard(h(TEXT), h(other))


def test_minhash_is_deterministic_and_datasketch_identical():
    """The batched signatures are datasketch's MinHash, bit for bit, for every text of a batch."""
    from datasketch import MinHash

    from ming.data.dedup import shingle_hashes

    texts = [TEXT, "短", "", "另一段完全不同的文字内容", TEXT * 40, "ＡＢＣ abc 😀 emoji"]
    h = MinHasher(num_perm=128, ngram=5)
    sigs = h.signatures(texts)
    for text, sig in zip(texts, sigs):
        ref = MinHash(num_perm=128, seed=1, hashfunc=lambda x: x)
        ref.update_batch(shingle_hashes(norm_for_hash(text), 5).tolist())
        assert (sig == ref.digest()).all()
        assert (sig == MinHasher().signature(text)).all()  # alone or in a batch: the same


def test_eval_index_catches_near_and_exact_and_inside_longer_prompts(tmp_path):
    f = tmp_path / "dev.jsonl"
    f.write_text('{"id": "e1", "question": "成人正常体温（腋测法）的范围是", "options": {"A": "36～37℃", "B": "35～36℃"}}\n'
                 '{"id": "e2", "turns": [{"role": "patient", "text": "' + TEXT + '"}]}\n'
                 '{"id": "e3", "prompt": "短"}\n', encoding="utf-8")
    idx = EvalIndex(MinHasher(), threshold=0.6)
    idx.add_files([f])
    assert idx.n_items == 3
    assert idx.match(rec("以下是一道选择题。\n成人正常体温(腋测法)的范围为\nA. 36～37℃\nB. 35～36℃")) == "e1"
    assert idx.match(rec(TEXT.replace("规律运动", "适当运动"))) == "e2"
    assert idx.match(rec("短")) == "e3"
    assert idx.match(rec("维生素C缺乏会导致什么病？")) is None
    # a case split over two user turns is caught on the joined user text
    two = {"id": "y", "source": "s", "messages": [
        {"role": "user", "content": TEXT[:40]}, {"role": "assistant", "content": "请继续说。"},
        {"role": "user", "content": TEXT[40:]}, {"role": "assistant", "content": "建议就医。"}]}
    assert idx.match(two) == "e2"


def test_fast_normalisation_equals_the_definition_for_every_character():
    """norm_many maps context-free characters through a table; the result is the definition's
    (NFKC, lower case, punctuation/symbols/spaces dropped) for every BMP character, alone and next to the
    characters whose normalisation depends on their neighbours (combining marks, Hangul jamo, capital sigma)."""
    import unicodedata

    from ming.data.dedup import _drop_table, norm_many

    def slow(t):
        return unicodedata.normalize("NFKC", t).lower().translate(_drop_table())

    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    for ctx in ("{}", "a{}", "{}\u0301", "e{}\u0301", "Ａ{}ｶﾞ", "\u1100{}\u1161", "Σ{}", "{}Σ", "{}{}", "{}😀"):
        texts = [ctx.format(c, c) for c in chars]
        assert norm_many(texts) == [slow(t) for t in texts], ctx
    assert norm_many(["", "头痛，发热！", "", "ＡＢＣ Σ"]) == ["", "头痛发热", "", "abcσ"]


@pytest.mark.parametrize("backend", ["memory", "bloom"])
def test_batch_decisions_equal_one_by_one_decisions(backend):
    """Deciding a whole batch at once (numpy) gives the decisions of one record at a time, in order: a record
    is a near duplicate of an earlier record of the same batch only if that one was kept."""
    import numpy as np

    rng = np.random.default_rng(3)
    one = NearDeduper(threshold=0.8, num_perm=128, capacity=10_000, backend=backend)
    many = NearDeduper(threshold=0.8, num_perm=128, capacity=10_000, backend=backend)
    ex_one, ex_many = ExactDeduper(capacity=10_000, backend=backend), ExactDeduper(capacity=10_000, backend=backend)
    for _ in range(5):
        keys = rng.integers(0, 40, size=(300, one.bands)).astype(np.uint64)  # many shared bands, chains
        hashes = rng.integers(0, 200, size=300).astype(np.uint64)
        want = [one.is_dup_or_add(k) for k in keys]
        assert many.dup_or_add_many(keys).tolist() == want
        assert ex_many.seen_or_add_many(hashes).tolist() == [ex_one.seen_or_add(int(h)) for h in hashes]
    assert 0 < sum(want) < len(want)


def test_bloom_filter_has_no_false_negatives_and_its_false_positive_rate_at_capacity():
    import numpy as np

    from ming.data.dedup import BloomFilter

    rng = np.random.default_rng(5)
    added = rng.integers(0, 2**63, size=50_000, dtype=np.uint64)
    b = BloomFilter(50_000, 1e-3)
    assert not b.contains(added).any()
    b.add(added)
    assert b.contains(added).all()  # no false negatives
    others = rng.integers(0, 2**63, size=400_000, dtype=np.uint64)
    assert b.contains(others).mean() < 2e-3  # at capacity, about the rate it was sized for


def test_record_features_share_one_normalisation_with_the_same_result():
    """The exact hash and the MinHash text of a record from one normalisation of its turns equal the ones
    computed separately, also where joining changes the normalisation (combining marks, Hangul jamo, capital
    sigma at turn boundaries, characters outside the BMP)."""
    from ming.data.dedup import hash64, norm_many, record_features, record_text

    tricky = ["\u0301开头", "结尾e", "\u1161모음", "ΣΑΣ", "😀表情", "Ｆｕｌｌ，全角", "普通的中文句子。", "", "\u3000"]
    recs = [{"messages": [{"role": r1, "content": a}, {"role": "assistant", "content": b}]}
            for r1 in ("user", "system") for a in tricky for b in tricky]
    recs.append({"messages": [{"role": "User", "content": "x"}, {"role": "assistant", "content": "y"}]})
    hashes, texts = record_features(recs)
    assert texts == norm_many([record_text(r) for r in recs])
    assert hashes == [hash64("\n".join(m["role"][0] + norm_for_hash(m["content"]) for m in r["messages"]))
                      for r in recs]


def test_eval_index_prefilters_and_band_lookup_equal_comparing_every_band(tmp_path):
    """The eval check rules texts out on partial signatures (a bit table, then sorted partial band sums) and
    finds candidates by band sum before comparing band values; a text must get the same eval item as when its
    whole signature's bands are compared with every item's (the first item sharing a band whose estimated
    Jaccard reaches the threshold, after an exact match of the normalised text)."""
    import json
    import random

    import numpy as np

    from ming.data.dedup import norm_many

    rng = random.Random(3)
    alphabet = "发热咳嗽头痛腹泻恶心呕吐胸闷气短乏力失眠皮疹关节肿痛血压血糖心率尿常规检查治疗建议考虑可能"
    items = ["".join(rng.choice(alphabet) for _ in range(rng.randint(10, 60))) for _ in range(300)]
    f = tmp_path / "dev.jsonl"
    f.write_text("".join(json.dumps({"id": f"e{i}", "prompt": t}, ensure_ascii=False) + "\n"
                         for i, t in enumerate(items)), encoding="utf-8")
    idx = EvalIndex(MinHasher(), threshold=0.6)
    idx.add_files([f])

    def mutate(t: str, k: int) -> str:
        chars = list(t)
        for _ in range(k):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        return "".join(chars)

    queries = [mutate(rng.choice(items), rng.choice([0, 1, 2, 4, 8, 16])) for _ in range(1500)]
    queries += ["".join(rng.choice(alphabet) for _ in range(30)) for _ in range(300)] + ["短", ""]
    h, bands, rows = idx.hasher, idx.bands, idx.rows
    item_norms = norm_many(items)
    item_sigs = h.signatures(item_norms, normalized=True)
    want = []
    for q, norm in zip(queries, norm_many(queries)):
        exact = next((f"e{i}" for i, n in enumerate(item_norms) if n == norm), None) if norm else None
        if exact or len(norm) < idx.min_chars:
            want.append(exact)
            continue
        same = item_sigs == h.signature(norm, normalized=True)[None, :]
        shares = same[:, :bands * rows].reshape(len(items), bands, rows).all(axis=2).any(axis=1)
        ok = np.flatnonzero(shares & (same.sum(axis=1) / h.num_perm >= idx.threshold))
        want.append(f"e{ok[0]}" if len(ok) else None)
    got = idx.match_texts(queries)
    assert got == want
    assert sum(1 for w in want if w) > 300 and sum(1 for w in want if not w) > 300


def test_eval_check_from_the_records_normalised_turns_equals_normalising_the_query_texts(tmp_path):
    """`match_batch(recs, turns)` builds the query texts' normalisations from the turns that `record_features`
    normalised (the join of the user turns where each was mapped character by character, lines and other
    joins normalised anew) and names the same eval item as normalising every query text itself."""
    import json
    import random

    from ming.data.dedup import record_features

    rng = random.Random(4)
    alphabet = list("发热咳嗽头痛腹泻恶心呕吐胸闷气短乏力失眠皮疹关节肿痛，。？ ab") + ["\n", "e\u0301", "가", "\u1161"]
    items = ["".join(rng.choice(alphabet[:-4]) for _ in range(rng.randint(12, 40))) for _ in range(60)]
    f = tmp_path / "dev.jsonl"
    f.write_text("".join(json.dumps({"id": f"e{i}", "prompt": t}, ensure_ascii=False) + "\n"
                         for i, t in enumerate(items)), encoding="utf-8")
    idx = EvalIndex(MinHasher(), threshold=0.6)
    idx.add_files([f])

    def text() -> str:
        if rng.random() < 0.5:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        t = rng.choice(items)
        cut = rng.randrange(len(t))
        return rng.choice([t, t[:cut] + "\n" + t[cut:], "前言很长的一行字在这里\n" + t, t[:cut], t + "e\u0301"])

    recs = []
    for k in range(400):
        msgs = []
        for _ in range(rng.randint(1, 3)):
            msgs += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        recs.append({"id": f"r{k}", "source": "s", "messages": msgs})
    _, _, turns = record_features(recs, turns=True)
    want = idx.match_batch(recs)
    assert idx.match_batch(recs, turns) == want
    assert 50 < sum(1 for w in want if w) < len(recs)
