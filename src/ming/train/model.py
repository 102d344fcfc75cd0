"""Load the model to train: resolve the base like `ming chat` does, choose the template, and wrap it for the
method (full fine-tuning, LoRA, or QLoRA = LoRA on a 4-bit base through bitsandbytes, CUDA only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ming import models
from ming.errors import MingError
from ming.templates import Template, detect


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    template: Any
    base_spec: str  # what adapter_config.json's base_model_name_or_path says (`ming.models.resolve` can load it)
    checkpoint_dir: Path  # the base's transformers folder


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def mixed_precision(dtype: str, device: str) -> str:
    """accelerate's mixed_precision for a --dtype and device: 'no', 'bf16' or 'fp16'."""
    import torch

    if dtype == "float32":
        return "no"
    if dtype == "bfloat16":
        return "bf16"
    if dtype == "float16":
        if device != "cuda":
            raise MingError("--dtype float16 needs a CUDA GPU; on CPU use bfloat16 (AMX) or float32")
        return "fp16"
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_has_bf16():
        return "bf16"
    return "no"


def _check_qlora(device: str) -> None:
    if device != "cuda":
        raise MingError("--method qlora quantizes the base to 4 bits with bitsandbytes, which needs a CUDA GPU; this "
                        f"run is on {device}. On CPU use --method lora (bf16 autocast keeps it fast).")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise MingError("--method qlora needs bitsandbytes: pip install bitsandbytes (or pip install 'ming[gpu]')") from exc


def start_ref(cfg) -> models.ModelRef:
    """What training starts from: the model named, else the untouched embedded 0.5B (the cheapest to train on a
    CPU; `--model-path 1.5b` names the default model's base), never an adapter unless one is named."""
    return models.resolve(cfg.model_path or "embedded", cfg.model_base, cfg.allow_download)


def load(cfg, device: str) -> Loaded:
    import torch
    from transformers import AutoModelForCausalLM

    if cfg.method == "qlora":
        _check_qlora(device)
    ref = start_ref(cfg)
    base_ref = ref.base if ref.kind == "lora" else ref
    ckpt = models.hf_checkpoint_dir(base_ref)
    tok = models.load_tokenizer(ref)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    name = cfg.conv_template or detect(tok, models.model_type(base_ref))
    template = Template(name, tok)

    kw: dict[str, Any] = {"dtype": torch.float32}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kw = {"dtype": compute, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute),
            "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}
    model = AutoModelForCausalLM.from_pretrained(ckpt, **kw)
    model.config.use_cache = False  # packed rows need it off; training never uses the cache
    base_spec = f"embedded:{base_ref.spec}" if base_ref.embedded else str(base_ref.path)

    if cfg.method == "full":
        if ref.kind == "lora":
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, ref.path).merge_and_unload()
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        from peft import LoraConfig, PeftModel, get_peft_model

        if cfg.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        if ref.kind == "lora":  # keep training an existing adapter
            model = PeftModel.from_pretrained(model, ref.path, is_trainable=True)
        else:
            targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else [
                t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
            lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=targets, bias="none", task_type="CAUSAL_LM")
            try:
                model = get_peft_model(model, lcfg)
            except ValueError as exc:
                raise MingError(f"--lora-targets {cfg.lora_targets!r} do not match this model's modules ({exc}); "
                                "use 'all-linear' or names such as q_proj,k_proj,v_proj,o_proj") from exc
        for pc in model.peft_config.values():
            pc.base_model_name_or_path = base_spec
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.method != "full":
            model.enable_input_require_grads()
    return Loaded(model, tok, template, base_spec, Path(ckpt))


def supports_packing(model) -> bool:
    """Packing relies on position ids defining the sample boundaries. Models without position ids (Bloom's
    ALiBi) cannot be packed this way."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "position_ids" in inspect.signature(inner.forward).parameters
