"""End-to-end training on tiny random models: the loss falls, a 20-sample set is memorised, and the output
folder loads the way `ming chat` loads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ming.train.config import TrainConfig

FIX = Path(__file__).parent / "fixtures" / "train"
MEM = str(FIX / "memorize20.jsonl")


def _train(**kw):
    from ming.train.sft import train

    base = dict(data=MEM, dtype="float32", device="cpu", threads=1, save_steps=0, logging_steps=1, warmup_ratio=0.0,
                system="none")
    base.update(kw)
    return train(TrainConfig(**base).validate())


def test_tiny_qwen_memorises_20_samples(tiny_qwen_dir, tmp_path):
    import torch

    out = tmp_path / "full"
    s = _train(model_path=str(tiny_qwen_dir), output=str(out), method="full", learning_rate=3e-2, batch_size=20,
               max_steps=60, lr_scheduler="constant", eval_data=MEM)
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert losses[0] > 10 and losses[-1] < 0.3, losses[::10]
    assert s["eval_loss_after"] < 0.3 < s["eval_loss_before"]
    # memorised: at every supervised position the most likely next token is the reference one, i.e. greedy
    # decoding of each prompt reproduces its answer and stops (one teacher-forced forward pass checks all 20)
    from transformers import AutoModelForCausalLM

    from ming.templates import Template
    from ming.train.dataset import load

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    samples, _ = load([MEM], Template("qwen", model_tokenizer(out)), 512)
    exact = 0
    with torch.no_grad():
        for smp in samples:
            ids = torch.tensor([smp.input_ids])
            pred = model(ids).logits[0, :-1].argmax(-1).tolist()
            pos = [i for i, t in enumerate(smp.labels[1:]) if t != -100]
            exact += all(pred[i] == smp.labels[i + 1] for i in pos)
    assert exact >= 18, f"only {exact}/20 answers memorised"


def model_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_lora_on_bloom_loss_decreases_and_adapter_loads(tiny_bloom_dir, tmp_path):
    from ming import models

    out = tmp_path / "lora"
    s = _train(model_path=str(tiny_bloom_dir), output=str(out), method="lora", learning_rate=5e-2, batch_size=10,
               max_steps=15, lora_r=8, eval_data=MEM)
    assert s["template"] == "bloom"
    assert s["eval_loss_after"] < s["eval_loss_before"] - 0.05
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(Path(tiny_bloom_dir).resolve())
    ref = models.resolve(str(out))  # what `ming chat --model-path OUT` does
    assert ref.kind == "lora" and ref.base.path == Path(tiny_bloom_dir).resolve()
    model, _ = models.load_hf_model(ref, device="cpu", dtype="float32")
    assert model is not None
    saved = (out / "train_config.yaml").read_text()
    assert "method: lora" in saved and "lora_r: 8" in saved


def test_qlora_on_cpu_is_a_clear_error(tiny_qwen_dir, tmp_path):
    from ming.errors import MingError

    with pytest.raises(MingError, match="CUDA"):
        _train(model_path=str(tiny_qwen_dir), output=str(tmp_path / "q"), method="qlora", max_steps=1)


def test_packing_refused_for_alibi_models(tiny_bloom_dir, tmp_path):
    from ming.errors import MingError

    with pytest.raises(MingError, match="packing"):
        _train(model_path=str(tiny_bloom_dir), output=str(tmp_path / "p"), packing=True, max_steps=1)
