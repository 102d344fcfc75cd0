"""A PEFT LoRA adapter runs on llama.cpp as base GGUF + GGUF LoRA (ming.lora_gguf): the same logits and greedy
tokens as transformers + PEFT on a tiny Qwen2, picked by `--backend auto`, and adapters llama.cpp cannot run
are refused with the reason."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("peft")

from ming.engine import GenerationConfig  # noqa: E402
from ming.errors import MingError  # noqa: E402
from test_convert_gguf import _first_logits, tiny  # noqa: E402,F401  (the tiny f32 Qwen2 + its GGUF, shared)

MSGS = [{"role": "user", "content": "我最近总是头痛，怎么办？"}]


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    """A LoRA on every linear layer with random A and B (an untrained LoRA has B = 0 and changes nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny[0], dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, lora_dropout=0.0)
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.mul_(0.5)
    out = tmp_path_factory.mktemp("tiny-lora")
    model.save_pretrained(out)
    return out


def _engine(**kw):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(device="cpu", threads=1, **kw))


def test_convert_writes_llamacpp_adapter(adapter, tmp_path):
    import gguf

    from ming.models.lora_gguf import convert

    info = convert(adapter, tmp_path / "a.gguf", "qwen2")
    assert info["pairs"] == 2 * 7 and info["rank"] == 4 and info["alpha"] == 8.0
    r = gguf.GGUFReader(str(tmp_path / "a.gguf"))
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    assert bytes(r.fields["general.type"].parts[-1]).decode() == "adapter"


def test_same_logits_and_tokens_as_peft(tiny, adapter):
    import numpy as np

    hf = _engine(model_path=str(adapter), model_base=str(tiny[0]), backend="hf")
    lc = _engine(model_path=str(adapter), model_base=str(tiny[1]), backend="llamacpp")
    base = _engine(model_path=str(tiny[1]), backend="llamacpp")
    assert lc.lora_path and lc.backend == "llamacpp"
    ids = hf.render(MSGS).ids
    x, y, z = _first_logits(lc, ids), _first_logits(hf, ids), _first_logits(base, ids)
    scale = np.abs(y).max()
    err, effect = np.abs(x - y).max(), np.abs(z - y).max()
    # f32 weights and adapter; llama.cpp keeps the KV cache in f16, hence ~1e-3 relative differences
    assert err / scale < 1e-2
    assert err < 0.1 * effect  # the adapter's effect is reproduced, not just noise around the base
    assert np.corrcoef(x - z, y - z)[0, 1] > 0.99
    gen = GenerationConfig(max_new_tokens=12, temperature=0)
    assert lc.generate(ids, gen).text == hf.generate(ids, gen).text


def test_auto_backend_runs_a_gguf_lora_on_llamacpp(tiny, adapter):
    eng = _engine(model_path=str(adapter), model_base=str(tiny[1]), backend="auto")
    assert eng.backend == "llamacpp" and eng.lora_path


@pytest.mark.parametrize("change,words", [({"use_dora": True}, "DoRA"),
                                           ({"modules_to_save": ["lm_head"]}, "merge it")])
def test_refuses_what_llamacpp_cannot_run(adapter, tmp_path, change, words):
    import shutil

    from ming.models.lora_gguf import convert

    bad = tmp_path / "bad"
    shutil.copytree(adapter, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg.update(change)
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MingError, match=words):
        convert(bad, tmp_path / "x.gguf", "qwen2")
