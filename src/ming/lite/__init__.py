"""MING-lite: the LoRA adapter that ming's own pipeline trained on the embedded base model (configs/data/ming-lite.yaml
+ configs/train/ming-lite.yaml, reproduced by scripts/ming_lite.sh). It ships in this package (adapter/: PEFT
safetensors, bf16, a few MB; MODEL_CARD.md) and is the default model of `ming chat`, `ming serve` and
`ming eval`; `--model base` gives the untouched embedded model."""

from __future__ import annotations

from pathlib import Path

NAME = "ming-lite"
ALIASES = ("ming-lite", "lite", "default")
ADAPTER_DIR = Path(__file__).resolve().parent / "adapter"


def available() -> bool:
    """Is the trained adapter in this install (a source checkout before the first training run has none)?"""
    return (ADAPTER_DIR / "adapter_config.json").is_file() and (ADAPTER_DIR / "adapter_model.safetensors").is_file()


def model_card() -> Path:
    return ADAPTER_DIR / "MODEL_CARD.md"
