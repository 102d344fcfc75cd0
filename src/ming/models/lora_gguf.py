"""A PEFT LoRA adapter (what `ming train --method lora` writes) -> a GGUF LoRA adapter, so llama.cpp runs a
fine-tuned model as base GGUF + adapter, at the fast engine's speed and without merging or re-quantizing.

The file follows llama.cpp's adapter format (src/llama-adapter.cpp): `general.type = adapter`,
`adapter.type = lora`, `adapter.lora.alpha`, and for each adapted weight `<gguf tensor name>.lora_a`
(numpy shape [r, in], PEFT's lora_A as it is) and `.lora_b` ([out, r], PEFT's lora_B). llama.cpp scales
the update by alpha / r like PEFT; rsLoRA's alpha / sqrt(r) is folded into the alpha written. Adapters
that are not plain LoRA on linear layers (DoRA, trained embeddings or heads) are refused with the reason."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from ming import envs
from ming.errors import MingError
from ming.models import gguf_meta

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


def gguf_arch(gguf_file: Path) -> str:
    """general.architecture of a GGUF file (the adapter must name the same one)."""

    arch = gguf_meta.architecture(gguf_file)
    if arch is None:
        raise MingError(f"{gguf_file} has no general.architecture: not a llama.cpp model file")
    return arch


def convert(adapter_dir: Path, out: Path, arch: str = "qwen2") -> dict:
    """Write the GGUF LoRA for the PEFT adapter in adapter_dir. Returns a summary."""
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg_path, weights = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise MingError(f"{adapter_dir} is not a PEFT LoRA adapter: it needs adapter_config.json and "
                        f"adapter_model.safetensors")
    cfg = json.loads(cfg_path.read_text())
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise MingError(f"{adapter_dir}: peft_type {cfg.get('peft_type')!r}; only LoRA adapters run on llama.cpp")
    if cfg.get("use_dora"):
        raise MingError(f"{adapter_dir} is a DoRA adapter; llama.cpp runs plain LoRA only: use --backend hf")
    if cfg.get("modules_to_save"):
        raise MingError(f"{adapter_dir} also trains {cfg['modules_to_save']} in full; llama.cpp adapters hold LoRA "
                        f"pairs only: merge it (`ming train merge`) and convert the merged model, or use --backend hf")
    r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise MingError(f"{adapter_dir} uses per-module ranks or alphas; llama.cpp adapters have one alpha")
    if cfg.get("use_rslora"):
        alpha = alpha * math.sqrt(r)  # llama.cpp scales by alpha / r; rsLoRA by alpha / sqrt(r)

    tensors = {k: v.float().numpy() for k, v in load_file(str(weights)).items()}  # bf16 has no numpy dtype
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if not m:
            raise MingError(f"{adapter_dir}: tensor {key!r} is not a LoRA A/B weight; llama.cpp cannot run it")
        pairs.setdefault(m["module"], {})[m["ab"]] = value
    layers = [int(x) for mod in pairs for x in re.findall(r"layers\.(\d+)\.", mod)]
    n_layers = max(layers) + 1 if layers else 1
    arch_enum = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch), None)
    if arch_enum is None:
        raise MingError(f"unknown llama.cpp architecture {arch!r}")
    name_map = gguf.get_tensor_name_map(arch_enum, n_layers)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    w.add_name(adapter_dir.name)
    n = 0
    for module in sorted(pairs):
        ab = pairs[module]
        if set(ab) != {"A", "B"}:
            raise MingError(f"{adapter_dir}: {module} has lora_{''.join(ab)} only; the adapter file is incomplete")
        a, b = ab["A"].astype(np.float32), ab["B"].astype(np.float32)
        if a.shape[0] != r or b.shape[1] != r:
            raise MingError(f"{adapter_dir}: {module} has rank {a.shape[0]}/{b.shape[1]}, adapter_config says {r}")
        target = name_map.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise MingError(f"{adapter_dir}: no llama.cpp tensor for {module!r} in architecture {arch}")
        w.add_tensor(target + ".lora_a", np.ascontiguousarray(a))
        w.add_tensor(target + ".lora_b", np.ascontiguousarray(b))
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return {"path": str(out), "pairs": n, "rank": r, "alpha": alpha, "layers": n_layers, "bytes": out.stat().st_size}


def cached(adapter_dir: Path, arch: str, name: str | None = None) -> Path:
    """The GGUF LoRA of adapter_dir in ming's cache (converted once; the key covers the adapter's bytes)."""

    adapter_dir = Path(adapter_dir)
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        p = adapter_dir / name
        st = p.stat()
        h.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(arch.encode())
    out = envs.ming_home() / "converted" / f"lora-{name or adapter_dir.name}-{h.hexdigest()[:10]}.gguf"
    if not out.is_file():
        convert(adapter_dir, out, arch)
    return out
