"""The streaming engine on tiny real models: UTF-8-safe streaming, stop strings, sampling, seeds,
beam search at any temperature, LoRA base + adapter."""

import pytest

from ming.engine.base import GenerationConfig
from ming.engine.detok import StreamDecoder

MSGS = [{"role": "user", "content": "我头痛，怎么办？"}]


def _byte_token(tokenizer, b: int) -> int:
    """The id of the byte-level BPE token for one raw byte (GPT-2's printable byte alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    if b in printable:
        ch = chr(b)
    else:
        ch = chr(256 + sorted(set(range(256)) - set(printable)).index(b))
    return tokenizer.convert_tokens_to_ids(ch)


def test_stream_never_emits_replacement_characters(qwen_tokenizer):
    text = "胸痛😀伴出汗，请立即就医。"
    ids = qwen_tokenizer.encode(text, add_special_tokens=False)
    d = StreamDecoder(qwen_tokenizer)
    pieces = [d.add(i) for i in ids] + [d.finish()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_stream_holds_back_incomplete_utf8_bytes(qwen_tokenizer):
    # "痛" is 3 UTF-8 bytes; byte-level BPE has a token per byte (GPT-2 byte alphabet)
    text = "头痛"
    byte_tokens = [_byte_token(qwen_tokenizer, b) for b in text.encode("utf-8")]
    assert qwen_tokenizer.decode(byte_tokens) == text
    d = StreamDecoder(qwen_tokenizer)
    out = [d.add(t) for t in byte_tokens]
    assert out[:2] == ["", ""] and out[2] == "头"  # nothing until the first character is complete
    assert out[3:5] == ["", ""] and out[5] == "痛"
    assert d.finish() == ""


def test_stop_string_is_cut_and_held_back(qwen_tokenizer):
    d = StreamDecoder(qwen_tokenizer, stop_strings=["USER:"])
    ids = qwen_tokenizer.encode("好的。\nUSER: 下一个问题", add_special_tokens=False)
    out = "".join(d.add(i) for i in ids) + d.finish()
    assert out == "好的。\n"
    assert d.stopped


def test_greedy_is_deterministic_and_streams(tiny_qwen_engine):
    e = tiny_qwen_engine
    g = GenerationConfig(max_new_tokens=12, temperature=0)
    a = list(e.chat_stream(MSGS, g))
    b = e.chat(MSGS, g)
    assert "".join(c.text for c in a) == b.text
    assert a[-1].finish_reason in ("stop", "length")
    assert a[-1].prompt_tokens == len(e.render(MSGS).ids)


def test_sampling_seed_reproducible(tiny_qwen_engine):
    e = tiny_qwen_engine
    g = GenerationConfig(max_new_tokens=16, temperature=1.5, top_p=0.95, top_k=50, seed=123)
    x = e.chat(MSGS, g).text
    assert e.chat(MSGS, g).text == x
    others = {e.chat(MSGS, g.replace(seed=s)).text for s in range(5)}
    assert len(others) > 1  # sampling really samples


@pytest.mark.parametrize("temperature", [0.0, 0.3, 0.7, 1.2])
def test_beam_search_with_any_temperature(tiny_bloom_engine, temperature):
    """MING errors for beam-size > 1 with temperature < 1; here beams are deterministic and never crash."""
    e = tiny_bloom_engine
    g = GenerationConfig(max_new_tokens=8, temperature=temperature, num_beams=3)
    out = e.chat(MSGS, g)
    assert out.finish_reason in ("stop", "length")
    assert out.text == e.chat(MSGS, g.replace(temperature=0.0)).text


def test_max_new_tokens_and_cancel(tiny_qwen_engine):
    import threading

    e = tiny_qwen_engine
    out = e.chat(MSGS, GenerationConfig(max_new_tokens=5, temperature=0, stop=()))
    assert out.completion_tokens <= 5
    ev = threading.Event()
    ev.set()
    chunks = list(e.stream(e.render(MSGS).ids, GenerationConfig(max_new_tokens=50), ev))
    assert chunks[-1].finish_reason == "cancelled" and chunks[-1].completion_tokens == 0


def test_prefix_cache_gives_same_tokens(tiny_qwen_engine):
    e = tiny_qwen_engine
    g = GenerationConfig(max_new_tokens=10, temperature=0)
    first = e.chat(MSGS, g)
    conv = MSGS + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "还有呢？"}]
    warm = e.chat(conv, g)
    assert warm.cached_tokens > 0
    e.reset_cache()
    cold = e.chat(conv, g)
    assert cold.cached_tokens == 0 and cold.text == warm.text


def test_lora_base_plus_adapter(tiny_qwen_dir, tmp_path):
    """--model-base BASE --model-path ADAPTER loads the adapter on the base, as MING does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ming.config import ModelOptions
    from ming.engine import create_engine

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)(input_ids=ids).logits
    assert not torch.allclose(want, plain)
    e = create_engine(ModelOptions(model_path=str(adapter), model_base=str(tiny_qwen_dir), backend="hf"))
    with torch.no_grad():
        got = e.model(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert e.template.name == "qwen"
