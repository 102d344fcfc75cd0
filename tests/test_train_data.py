"""Records -> samples: the loss mask comes from the chat template, token for token; truncation drops whole early
exchanges; drops and bad rows are counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from ming.templates import Template
from ming.train import dataset
from ming.train.dataset import IGNORE

FIX = Path(__file__).parent / "fixtures" / "train"
CONV = [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "我头痛。"},
        {"role": "assistant", "content": "持续多久了？"}, {"role": "user", "content": "三天了。"},
        {"role": "assistant", "content": "建议测量血压。"}]


def _expected(tok, pieces):
    """(ids, supervised flags) from hand-written (text, supervised) pieces."""
    ids, sup = [], []
    for text, s in pieces:
        t = tok.encode(text, add_special_tokens=False)
        ids += t
        sup += [s] * len(t)
    return ids, sup


def _check(sample, ids, sup):
    assert sample.input_ids == ids
    assert sample.labels == [i if s else IGNORE for i, s in zip(ids, sup)]


def test_qwen_mask_exact_positions(qwen_tokenizer):
    s, reason, _ = dataset.tokenize(Template("qwen", qwen_tokenizer), CONV, 512)
    ids, sup = _expected(qwen_tokenizer, [
        ("<|im_start|>system\n你是医生。<|im_end|>\n<|im_start|>user\n我头痛。<|im_end|>\n<|im_start|>assistant\n", False),
        ("持续多久了？<|im_end|>", True),
        ("\n<|im_start|>user\n三天了。<|im_end|>\n<|im_start|>assistant\n", False),
        ("建议测量血压。<|im_end|>", True), ("\n", False)])
    _check(s, ids, sup)
    assert reason == "ok"
    # both assistant turns supervised, the user turns' delimiters are not
    text = qwen_tokenizer.decode([t for t in s.labels if t != IGNORE])
    assert text == "持续多久了？<|im_end|>建议测量血压。<|im_end|>"


def test_bloom_mask_exact_positions(bloom_tokenizer):
    s, _, _ = dataset.tokenize(Template("bloom", bloom_tokenizer), CONV, 512)
    ids, sup = _expected(bloom_tokenizer, [
        ("你是医生。", False), (" USER: 我头痛。", False), (" ASSISTANT:", False), (" 持续多久了？</s>", True),
        ("USER: 三天了。", False), (" ASSISTANT:", False), (" 建议测量血压。</s>", True)])
    _check(s, ids, sup)


def test_hf_template_mask_exact_positions(qwen_tokenizer):
    tpl = Template("hf", qwen_tokenizer)
    s, _, _ = dataset.tokenize(tpl, CONV, 512)
    full = qwen_tokenizer.apply_chat_template(CONV, tokenize=False)
    assert qwen_tokenizer.decode(s.input_ids) == full
    sup_text = [qwen_tokenizer.decode([t]) for t in s.labels if t != IGNORE]
    assert "".join(sup_text) == "持续多久了？<|im_end|>\n建议测量血压。<|im_end|>\n"
    # every supervised token lies inside an assistant reply: the token before the first one ends "assistant\n"
    first = next(i for i, t in enumerate(s.labels) if t != IGNORE)
    assert qwen_tokenizer.decode(s.input_ids[:first]).endswith("<|im_start|>assistant\n")


def test_truncation_drops_whole_early_exchanges(qwen_tokenizer):
    tpl = Template("qwen", qwen_tokenizer)
    full = len(tpl.render(CONV).ids)
    last_only = tpl.render([CONV[0]] + CONV[3:])
    s, reason, dropped = dataset.tokenize(tpl, CONV, full - 1)
    assert reason == "truncated" and dropped == 1
    assert s.input_ids == last_only.ids  # system kept, first exchange gone, nothing cut mid-turn
    s, reason, _ = dataset.tokenize(tpl, CONV, len(last_only.ids) - 1)
    assert s is None and reason == "too_long"
    s, reason, _ = dataset.tokenize(tpl, CONV, full - 1, truncation="drop")
    assert s is None and reason == "too_long"


def test_reader_formats_drops_and_bad_rows_are_counted(qwen_tokenizer):
    tpl = Template("qwen", qwen_tokenizer)
    samples, rep = dataset.load([str(FIX / "mixed.jsonl")], tpl, 512, system=None)
    assert rep.records == 3 and rep.samples == 3 and rep.bad_rows == 2  # ming + ShareGPT + Alpaca; 2 bad lines
    assert any("mixed.jsonl:4" in e for e in rep.read_errors["examples"])
    assert all(s.num_targets > 0 for s in samples)
    samples, rep = dataset.load([str(FIX / "memorize20.jsonl")], tpl, 30, max_dropped_fraction=1.0)
    assert rep.dropped["too_long"] + rep.samples == 20 and rep.dropped["too_long"] > 0
    from ming.errors import MingError

    with pytest.raises(MingError, match="max-dropped-fraction"):
        dataset.load([str(FIX / "memorize20.jsonl")], tpl, 30, max_dropped_fraction=0.01)
    with pytest.raises(MingError, match="does not exist"):
        dataset.load(["/nonexistent.jsonl"], tpl, 512)


def test_system_prompt_added_only_where_missing(qwen_tokenizer):
    from ming.prompts import QA

    tpl = Template("qwen", qwen_tokenizer)
    sys_msg = dataset.system_message("qa", tpl)
    assert sys_msg == QA
    assert dataset.with_system(CONV, sys_msg)[0]["content"] == "你是医生。"
    assert dataset.with_system(CONV[1:3], sys_msg)[0] == {"role": "system", "content": QA}
    assert dataset.system_message("none", tpl) is None
