"""MING-lite is the default model: the packaged adapter on the embedded base, run by llama.cpp; `--model base`
is the untouched model; training never starts from the adapter by accident; the shipped files are what the
model card says."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ming import lite, models
from ming.errors import ModelNotFoundError


@pytest.fixture
def no_lite(monkeypatch, tmp_path):
    monkeypatch.setattr(lite, "ADAPTER_DIR", tmp_path / "missing")


def test_default_is_ming_lite_when_shipped():
    if not lite.available():
        pytest.skip("this checkout has no trained MING-lite adapter yet (bash scripts/ming_lite.sh)")
    ref = models.resolve(None)
    assert ref.kind == "lora" and ref.display == "ming-lite" and ref.base.embedded
    assert models.resolve("ming-lite").path == ref.path == models.resolve("default").path
    base = models.resolve("base")
    assert base.kind == "gguf" and base.embedded
    assert models.resolve("embedded").path == base.path


def test_without_the_adapter_default_is_the_base_and_lite_is_a_clear_error(no_lite):
    assert models.resolve(None).kind == "gguf"
    with pytest.raises(ModelNotFoundError, match="ming_lite.sh"):
        models.resolve("ming-lite")


def test_training_starts_from_the_base_not_the_default():
    from ming.train.config import TrainConfig
    from ming.train.model import start_ref

    ref = start_ref(TrainConfig())  # the default config ...
    assert ref.kind == "gguf" and ref.embedded  # ... starts from the untouched embedded base
    assert ref.path == models.resolve("base").path
    if lite.available():
        assert models.resolve(None).kind == "lora"  # while chat's default is the adapter


def test_shipped_adapter_is_small_bf16_with_a_model_card():
    if not lite.available():
        pytest.skip("no trained MING-lite adapter in this checkout")
    from safetensors import safe_open

    cfg = json.loads((lite.ADAPTER_DIR / "adapter_config.json").read_text())
    assert cfg["r"] <= 16 and cfg["base_model_name_or_path"] == "embedded" and cfg["peft_type"] == "LORA"
    path = lite.ADAPTER_DIR / "adapter_model.safetensors"
    assert path.stat().st_size < 20e6
    with safe_open(str(path), framework="pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in list(f.keys())[:4]} == {"torch.bfloat16"}
    card = lite.model_card().read_text(encoding="utf-8")
    for words in ("Research use only", "请勿商用", "Data mix actually used", "Limitations", "base vs MING-lite"):
        assert words in card, words


def test_ming_chat_with_no_arguments_talks_to_ming_lite_on_llamacpp():
    if not lite.available():
        pytest.skip("no trained MING-lite adapter in this checkout")
    pytest.importorskip("llama_cpp")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "ming", "chat", "--max-new-tokens", "24", "--temperature", "0",
                        "--once", "感冒了应该注意什么？"], capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loaded ming-lite (LoRA on embedded:" in r.stderr and "with llama.cpp" in r.stderr
    answer = r.stdout.split("明医:", 1)[1]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer)
    base = subprocess.run([sys.executable, "-m", "ming", "chat", "--model", "base", "--max-new-tokens", "4",
                           "--temperature", "0", "--once", "你好"], capture_output=True, text=True, timeout=900,
                          env=env)
    assert base.returncode == 0 and "loaded embedded:" in base.stderr and "ming-lite" not in base.stderr
