"""MING-lite: the LoRA adapter that ming's own pipeline trained on the embedded 0.5B model (configs/data/ming-lite.yaml
+ configs/train/ming-lite.yaml, reproduced by scripts/ming_lite.sh). The script writes it into adapter/ (PEFT
safetensors, bf16, a few MB, next to MODEL_CARD.md; the weights are not kept in git) and it then runs by name:
`--model ming-lite`. It is not the default model:
it answers "A" to most exam questions and loses to its own base on the dev MCQ suite (docs/models.md)."""

from __future__ import annotations

from pathlib import Path

NAME = "ming-lite"
ALIASES = ("ming-lite", "lite")
BASE = "0.5b"  # the embedded model it was trained on (ming.models.embedded.MODELS)
ADAPTER_DIR = Path(__file__).resolve().parent / "adapter"


def available() -> bool:
    """Is the trained adapter in this install (a source checkout before the first training run has none)?"""
    return (ADAPTER_DIR / "adapter_config.json").is_file() and (ADAPTER_DIR / "adapter_model.safetensors").is_file()


def model_card() -> Path:
    return ADAPTER_DIR / "MODEL_CARD.md"
