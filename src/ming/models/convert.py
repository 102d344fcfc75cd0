"""Hugging Face checkpoint -> GGUF, so a model fine-tuned with `ming train` runs on the fast CPU engine.

Written with the `gguf` package that llama.cpp publishes (GGUFWriter, TensorNameMap, SpecialVocab),
following llama.cpp's convert_hf_to_gguf.py for the architectures ming trains (Qwen2 — which is
also Qwen1.5, the MING-1.8B base — and Qwen3). The weights are written as f32 / f16; other types
(q8_0, q4_k_m, …) are made from that f16 file by llama.cpp's own quantizer (`llama_model_quantize`),
so k-quant mixtures are exactly llama.cpp's. A GGUF source is re-quantized (quality drops a little:
check perplexity, see bench/engine.py); a LoRA adapter is merged into its base first."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from ming import models
from ming.engine import llamacpp
from ming.engine import threads as thread_policy
from ming.errors import MingError

# outtype -> llama_ftype (llama.h); f32/f16 are written directly, the others quantized by llama.cpp
OUTTYPES: dict[str, int] = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2, "q5_0": 8, "q5_k_m": 17, "q4_k_m": 15,
                            "q4_k_s": 14, "q6_k": 18}
# --output-type -> ggml_type (ggml.h): the output layer's type (the token embedding when it is tied), which the
# k-quant mixtures otherwise keep at Q6_K. Q4_K is repacked by llama.cpp's CPU kernels, Q6_K is not (docs/serve.md)
OUTPUT_TYPES: dict[str, int] = {"q4_k": 12, "q5_k": 13, "q6_k": 14, "q8_0": 8}
SUPPORTED_ARCHS = {"qwen2": "QWEN2", "qwen3": "QWEN3"}


def _say(msg: str) -> None:
    print(f"[ming] {msg}", file=sys.stderr)


# -----------------------------------------------------------------------------------------------
# Reading the checkpoint
# -----------------------------------------------------------------------------------------------
def _iter_tensors(model_dir: Path):
    """(name, float32 numpy array) for every tensor of a safetensors or PyTorch checkpoint."""
    import torch

    st = sorted(model_dir.glob("*.safetensors"))
    if st:
        from safetensors import safe_open

        for f in st:
            with safe_open(str(f), framework="pt") as fh:
                for name in fh.keys():
                    yield name, fh.get_tensor(name).to(torch.float32).numpy()
        return
    bins = sorted(model_dir.glob("pytorch_model*.bin"))
    if not bins:
        raise MingError(f"{model_dir} has no *.safetensors or pytorch_model*.bin weights; is it a Hugging Face "
                        f"checkpoint folder? (found: {', '.join(sorted(p.name for p in model_dir.iterdir())[:8])})")
    for f in bins:
        for name, t in torch.load(f, map_location="cpu", weights_only=True).items():
            yield name, t.to(torch.float32).numpy()


def _vocab(tokenizer, vocab_size: int):
    """Token strings and types in llama.cpp's BPE ("gpt2") layout, as convert_hf_to_gguf.py does."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = getattr(tokenizer, "added_tokens_decoder", {})
    tokens, types = [], []
    for i in range(vocab_size):
        tok = reverse.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif tok in added:
            special = decoder[i].special if i in decoder else False
            looks_special = tok.startswith("<|") and tok.endswith("|>")
            types.append(gguf.TokenType.CONTROL if special or looks_special else gguf.TokenType.USER_DEFINED)
            tokens.append(tok)
        else:
            types.append(gguf.TokenType.NORMAL)
            tokens.append(tok)
    return tokens, types


# -----------------------------------------------------------------------------------------------
# Writing
# -----------------------------------------------------------------------------------------------
def write_gguf(model_dir: Path, out: Path, outtype: str = "f16") -> dict:
    """Write an f32/f16 GGUF of the HF checkpoint in model_dir. Returns a summary."""
    import gguf
    import numpy as np
    from transformers import AutoTokenizer

    if outtype not in ("f32", "f16"):
        raise ValueError(outtype)
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise MingError(f"{model_dir} has no config.json: not a Hugging Face checkpoint folder")
    cfg = json.loads(cfg_path.read_text())
    mtype = cfg.get("model_type", "?")
    if mtype not in SUPPORTED_ARCHS:
        raise MingError(
            f"`ming models convert` handles {', '.join(sorted(SUPPORTED_ARCHS))} checkpoints (the Qwen family MING "
            f"fine-tunes); {model_dir} is model_type {mtype!r}. For other architectures use llama.cpp's "
            f"convert_hf_to_gguf.py, or run the model with --backend hf.")
    arch = getattr(gguf.MODEL_ARCH, SUPPORTED_ARCHS[mtype])
    n_layers = int(cfg["num_hidden_layers"])
    name_map = gguf.get_tensor_name_map(arch, n_layers)
    tok = AutoTokenizer.from_pretrained(model_dir)
    vocab_size = int(cfg.get("vocab_size") or len(tok))
    if vocab_size < len(tok):
        raise MingError(f"config.json says vocab_size {vocab_size} but the tokenizer has {len(tok)} tokens")

    w = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(model_dir.name)
    n_heads = int(cfg["num_attention_heads"])
    w.add_context_length(int(cfg.get("max_position_embeddings", 2048)))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_block_count(n_layers)
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(n_heads)
    w.add_head_count_kv(int(cfg.get("num_key_value_heads", n_heads)))
    if cfg.get("head_dim"):
        w.add_key_length(int(cfg["head_dim"]))
        w.add_value_length(int(cfg["head_dim"]))
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_file_type(OUTTYPES[outtype])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    rs = cfg.get("rope_scaling") or {}
    if rs.get("type", rs.get("rope_type")) == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rs["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(rs["original_max_position_embeddings"]))

    tokens, types = _vocab(tok, vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise MingError(f"{model_dir}'s tokenizer has no BPE merges (tokenizer.json); cannot write a GGUF vocabulary")
    if getattr(tok, "chat_template", None) and not special.chat_template:
        special.chat_template = tok.chat_template
    special.add_to_gguf(w, quiet=True)

    tied = bool(cfg.get("tie_word_embeddings", False))
    n_params, n_tensors, skipped = 0, 0, []
    for hf_name, data in _iter_tensors(model_dir):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp uses token_embd for the output when there is no output.weight
        new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            skipped.append(hf_name)
            continue
        if outtype == "f16" and data.ndim >= 2:
            data = data.astype(np.float16)
        else:
            data = data.astype(np.float32)
        w.add_tensor(new, data)
        n_params += data.size
        n_tensors += 1
    if skipped:
        raise MingError(f"{len(skipped)} tensors of {model_dir} have no GGUF name for {mtype} (first: {skipped[:3]}); "
                        f"the checkpoint is not a plain {mtype} model")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"arch": mtype, "tensors": n_tensors, "params": n_params}


def quantize(src: Path, out: Path, outtype: str, threads: int | None = None, allow_requantize: bool = False,
             output_type: str | None = None) -> None:
    """Quantize a GGUF with llama.cpp's quantizer (k-quant mixtures included); `output_type` sets the output
    layer's type instead of the mixture's."""

    L = llamacpp._llama()
    llamacpp._init_backend(L)
    params = L.llama_model_quantize_default_params()
    params.ftype = OUTTYPES[outtype]
    if output_type is not None:
        params.output_tensor_type = OUTPUT_TYPES[output_type]
    params.nthread = thread_policy.resolve(threads)
    params.allow_requantize = allow_requantize
    rc = L.llama_model_quantize(str(src).encode(), str(out).encode(), params)
    if rc != 0:
        raise MingError(f"llama.cpp could not quantize {src} to {outtype} (code {rc}); see the message above")


def _merged_checkpoint(ref, tmp: Path) -> Path:
    _say(f"merging the LoRA adapter {ref.path} into {ref.base.describe()} …")
    model, tok = models.load_hf_model(ref, device="cpu", dtype="float32", merge_lora=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    return tmp


def convert(src: str, out: str | Path, outtype: str = "q4_k_m", threads: int | None = None,
            progress: Callable[[str], None] = _say, output_type: str | None = None) -> dict:
    """Convert `src` (HF folder, LoRA adapter folder, or GGUF to re-quantize) to a GGUF file `out`;
    `output_type` (q4_k, q5_k, q6_k, q8_0) overrides the type the mixture gives the output layer."""

    if outtype not in OUTTYPES:
        raise MingError(f"unknown --outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    if output_type is not None:
        if output_type not in OUTPUT_TYPES:
            raise MingError(f"unknown --output-type {output_type!r}; choose one of {', '.join(OUTPUT_TYPES)}")
        if outtype in ("f32", "f16"):
            raise MingError(f"--output-type applies to a quantized --outtype; {outtype} is written as it is")
    out = Path(out).expanduser()
    if out.suffix != ".gguf":
        raise MingError(f"--out must end in .gguf, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ref = models.resolve(src)
    partial = out.with_name(out.name + f".part-{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="ming-convert-", dir=out.parent) as tmpd:
        tmp = Path(tmpd)
        try:
            if ref.kind == "gguf":
                if outtype in ("f32", "f16"):
                    raise MingError(f"{ref.path} is already a GGUF; converting it to {outtype} would only "
                                    f"dequantize it. Pick a quantized --outtype (q8_0, q4_0, q4_k_m …)")
                progress(f"re-quantizing {ref.path.name} to {outtype} (from already quantized weights: "
                         f"check quality, e.g. perplexity in bench/engine.py)")
                quantize(ref.path, partial, outtype, threads, allow_requantize=True, output_type=output_type)
                info = {"arch": models.model_type(ref), "source": "gguf"}
            else:
                model_dir = _merged_checkpoint(ref, tmp / "merged") if ref.kind == "lora" else ref.path
                if outtype in ("f32", "f16"):
                    progress(f"writing {outtype} GGUF from {model_dir} …")
                    info = write_gguf(model_dir, partial, outtype)
                else:
                    f16 = tmp / "model-f16.gguf"
                    progress(f"writing f16 GGUF from {model_dir} …")
                    info = write_gguf(model_dir, f16, "f16")
                    progress(f"quantizing to {outtype} with llama.cpp …")
                    quantize(f16, partial, outtype, threads, output_type=output_type)
            os.replace(partial, out)
        finally:
            if partial.exists():
                partial.unlink()
    info.update(out=str(out), outtype=outtype, output_type=output_type, size=out.stat().st_size)
    return info
