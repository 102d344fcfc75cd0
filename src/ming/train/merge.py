"""`ming train merge`: fold a LoRA adapter into its base and save a plain Hugging Face checkpoint (safetensors,
config, tokenizer, generation config) that `ming chat`, transformers and vLLM load without peft.

GGUF for the CPU engine (llama.cpp): `ming models convert MERGED --out ming.gguf --outtype q4_k_m` (it also takes
the adapter folder directly and merges it first), or llama.cpp's own `convert_hf_to_gguf.py MERGED`."""

from __future__ import annotations

import sys
from pathlib import Path

from ming import models
from ming.errors import MingError


def merge(adapter: str, output: str, base: str | None = None, dtype: str = "float32",
          allow_download: bool = False) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ref = models.resolve(adapter, base, allow_download)
    if ref.kind != "lora":
        raise MingError(f"{adapter} is not a LoRA adapter (no adapter_config.json) — nothing to merge. A full "
                        "fine-tune's output folder is already a plain checkpoint.")
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise MingError(f"unknown --dtype {dtype!r}; choose float32, bfloat16 or float16")
    out = Path(output)
    if out.resolve() == ref.path.resolve():
        raise MingError("--output must differ from the adapter folder")
    ckpt = models.hf_checkpoint_dir(ref.base)
    print(f"[ming] merging {ref.path} into {ckpt} …", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(ref.path)).merge_and_unload()
    model = model.to(table[dtype])
    model.config.use_cache = True
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok = models.load_tokenizer(ref)

    def save(d: Path):
        model.save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)

    out.parent.mkdir(parents=True, exist_ok=True)
    models.atomic_save(out, save)
    return out
