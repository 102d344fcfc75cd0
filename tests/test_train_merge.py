"""`ming train merge`: the merged checkpoint gives the logits of base + adapter and loads without peft."""

from __future__ import annotations

import json
from pathlib import Path

from ming.cli.main import main
from ming.train.config import TrainConfig

FIX = Path(__file__).parent / "fixtures" / "train"


def test_merge_round_trip(tiny_qwen_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ming import models
    from ming.train.sft import train

    adapter = tmp_path / "lora"
    train(TrainConfig(data=str(FIX / "memorize20.jsonl"), model_path=str(tiny_qwen_dir), output=str(adapter),
                      dtype="float32", device="cpu", threads=1, learning_rate=5e-2, max_steps=4, batch_size=10,
                      save_steps=0, system="none").validate())
    merged = tmp_path / "merged"
    assert main(["train", "merge", "--model-path", str(adapter), "--output", str(merged)]) == 0
    assert not (merged / "adapter_config.json").exists() and (merged / "config.json").is_file()
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())

    ids = torch.tensor([list(range(100, 140))])
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
    peft_model = PeftModel.from_pretrained(base, str(adapter)).eval()
    m = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()  # transformers alone
    with torch.no_grad():
        want, got = peft_model(ids).logits, m(ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (want - plain).abs().max() > 1e-3  # the adapter changed something, so the comparison means something
    assert models.resolve(str(merged)).kind == "hf"  # `ming chat --model-path MERGED` loads it as a plain model


def test_merge_refuses_a_plain_model(tiny_qwen_dir, tmp_path, capsys):
    assert main(["train", "merge", "--model-path", str(tiny_qwen_dir), "--output", str(tmp_path / "m")]) == 2
    assert "not a LoRA adapter" in capsys.readouterr().err
