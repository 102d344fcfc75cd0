"""Batch plans and collation: every sample once per epoch, length grouping, sharding, and packed rows that give
exactly the logits of the samples run one by one."""

from __future__ import annotations

import pytest

from ming.train import collate
from ming.train.dataset import IGNORE, Sample


def _samples(lengths):
    return [Sample(list(range(1, n + 1)), [IGNORE] * (n // 2) + list(range(n // 2 + 1, n + 1))) for n in lengths]


def test_plan_covers_every_sample_once_and_is_deterministic():
    import random

    lengths = [random.Random(i).randint(5, 300) for i in range(103)]
    for kw in ({}, {"group_by_length": False}, {"packing_len": 512}):
        p = collate.plan(lengths, 8, seed=1, epoch=0, **kw)
        flat = sorted(j for b in p for row in b for j in row)
        assert flat == list(range(103))
        assert p == collate.plan(lengths, 8, seed=1, epoch=0, **kw)
        assert p != collate.plan(lengths, 8, seed=1, epoch=1, **kw)
    p = collate.plan(lengths, 8, seed=1, epoch=0, packing_len=512)
    assert all(sum(lengths[j] for j in row) <= 512 for b in p for row in b)


def test_length_grouping_reduces_padding():
    import random

    lengths = [random.Random(i).randint(5, 300) for i in range(400)]

    def pad_fraction(p):
        real = sum(lengths[r[0]] for b in p for r in b)
        padded = sum(max(lengths[r[0]] for r in b) * len(b) for b in p)
        return 1 - real / padded

    grouped = pad_fraction(collate.plan(lengths, 8, seed=0, epoch=0))
    random_ = pad_fraction(collate.plan(lengths, 8, seed=0, epoch=0, group_by_length=False))
    assert grouped < 0.05 < random_


def test_shard_splits_rows_contiguously():
    rows = [[i] for i in range(7)]
    parts = [collate.shard(rows, r, 3) for r in range(3)]
    assert sum(parts, []) == rows and max(map(len, parts)) - min(map(len, parts)) <= 1


def test_collate_pads_right_and_masks_pads():
    s = _samples([4, 6])
    b = collate.collate([[0], [1]], s, pad_id=0)
    assert b["input_ids"].tolist()[0] == [1, 2, 3, 4, 0, 0]
    assert b["attention_mask"].tolist()[0] == [1, 1, 1, 1, 0, 0]
    assert b["labels"].tolist()[0] == [IGNORE, IGNORE, 3, 4, IGNORE, IGNORE]
    assert b["real_tokens"] == 10
    assert collate.collate([[0]], s, pad_id=0, pad_to=16)["input_ids"].shape == (1, 16)
    p = collate.collate([[0, 1]], s, pad_id=0, packing=True)
    assert p["attention_mask"] is None
    assert p["position_ids"].tolist()[0] == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]


def test_packed_logits_equal_unpacked(tiny_qwen_dir, qwen_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from ming.templates import Template
    from ming.train.dataset import tokenize

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32).eval()
    tpl = Template("qwen", qwen_tokenizer)
    convs = [[{"role": "user", "content": "头痛" * k}, {"role": "assistant", "content": "多休息。" * k}] for k in (1, 3, 2)]
    samples = [tokenize(tpl, c, 512)[0] for c in convs]
    packed = collate.collate([[0, 1, 2]], samples, pad_id=0, packing=True)
    with torch.no_grad():
        out = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        start = 0
        for s in samples:
            alone = model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0]
            torch.testing.assert_close(out[start:start + len(s)], alone, atol=1e-5, rtol=1e-4)
            start += len(s)
        # and the test can fail: without position ids the second sample attends to the first
        wrong = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
        n0 = len(samples[0])
        with pytest.raises(AssertionError):
            torch.testing.assert_close(wrong[n0:n0 + len(samples[1])],
                                       model(input_ids=torch.tensor([samples[1].input_ids])).logits[0],
                                       atol=1e-5, rtol=1e-4)
