"""Resolve and load a model: the embedded default, a local HF directory, a .gguf file, or a base plus
a LoRA adapter. Device and dtype are chosen here and nowhere else. Nothing is downloaded unless the
user asks for it (`--allow-download` or MING_ALLOW_DOWNLOAD=1)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ming import envs, lite
from ming.errors import MingError, ModelNotFoundError
from ming.models import embedded, gguf_meta

log = logging.getLogger("ming.models")

# The default model of `ming chat`, `ming serve` and `ming eval`, chosen by measurement (docs/models.md): the most
# accurate model on the pooled dev exam-MCQ suite among those that decode at >= 10 tokens/s on a 2-core CPU.
DEFAULT_MODEL = "1.5b"
DEFAULT_REASON = ("most accurate on the pooled dev exam MCQs among the models that decode >= 10 tok/s on 2 cores "
                  "(docs/models.md)")
BASE_ALIASES = ("base",)  # the untouched embedded model the default runs on
EMBEDDED_ALIASES = ("embedded", *BASE_ALIASES)  # kept for old callers; "embedded" alone = the 0.5B (embedded.LEGACY)


@dataclass
class ModelRef:
    kind: str  # "hf" | "gguf" | "lora"
    path: Path
    display: str
    base: "ModelRef | None" = None
    embedded: bool = False
    spec: str | None = None  # a name that resolves to this model again ("1.5b", "ming-lite"), when it has one

    def describe(self) -> str:
        if self.kind == "lora":
            return f"{self.display} (LoRA on {self.base.display})"
        return self.display


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------
def resolve(model_path: str | None = None, model_base: str | None = None, allow_download: bool = False) -> ModelRef:
    """Names: None / "default" = the default model; "0.5b", "1.5b" (or "embedded:1.5b") = an embedded model;
    "base" = the embedded model under the default (itself when the default has no adapter); "embedded" = the
    0.5B (what adapters trained before the 1.5B name as their base); "ming-lite" = the MING-lite adapter on the
    0.5B. Anything else is a path (or, with --allow-download, a Hub id)."""
    allow_download = allow_download or envs.allow_download()
    if model_base:
        base = resolve(model_base, allow_download=allow_download)
        if model_path is None:
            return base
        adapter = _local_or_download(model_path, allow_download)
        if not (adapter / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"--model-base was given, so --model-path must be a LoRA adapter folder with adapter_config.json; "
                f"{adapter} has {_listing(adapter)}. Drop --model-base to load {adapter} on its own."
            )
        return ModelRef("lora", adapter, adapter.name, base=base)
    named = named_ref(model_path)
    if named is not None:
        return named
    path = _local_or_download(model_path, allow_download)
    if path.is_file():
        if path.suffix == ".gguf":
            return ModelRef("gguf", path, path.name)
        raise ModelNotFoundError(f"{path} is a file but not a .gguf model; give a .gguf file or a model folder")
    if (path / "adapter_config.json").is_file():
        cfg = json.loads((path / "adapter_config.json").read_text())
        base_name = (cfg.get("base_model_name_or_path") or "").replace("ming:", "")
        if base_name and (Path(base_name).exists() or embedded_key(base_name)):
            base = resolve(base_name, allow_download=allow_download)
            return ModelRef("lora", path, path.name, base=base)
        raise ModelNotFoundError(
            f"{path} is a LoRA adapter whose base model {base_name!r} is not on this machine. "
            f"Pass the base explicitly: ming chat --model-base /path/to/base --model-path {path}"
        )
    if (path / "config.json").is_file():
        return ModelRef("hf", path, path.name)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelRef("gguf", ggufs[0], ggufs[0].name)
    raise ModelNotFoundError(
        f"{path} is not a model folder: expected config.json (Hugging Face checkpoint), adapter_config.json "
        f"(LoRA adapter) or one .gguf file, found {_listing(path)}."
    )


def named_ref(name: str | None) -> ModelRef | None:
    """The model a short name stands for, or None when `name` is not one of ming's names (then it is a path)."""
    if name is None or name.lower() == "default":
        return named_ref(DEFAULT_MODEL)
    if name.lower() in lite.ALIASES:
        return lite_ref()
    key = embedded_key(name)
    return embedded_ref(key) if key else None


def embedded_key(name: str) -> str | None:
    """The key in embedded.MODELS that a name means ("1.5b", "embedded:1.5b", the file stem, "base", the legacy
    "embedded"), or None."""
    n = name.strip().lower()
    if n in BASE_ALIASES:
        return base_key()
    if n == "embedded":
        return embedded.LEGACY
    n = n.removeprefix("embedded:")
    for m in embedded.MODELS.values():
        if n in (m.key, m.name, m.filename):
            return m.key
    return None


def base_key() -> str:
    """The embedded model under the default: the default itself, or the base of the default adapter."""
    return lite.BASE if DEFAULT_MODEL.lower() in lite.ALIASES else DEFAULT_MODEL


def default_ref(explicit: bool = False) -> ModelRef:
    """The default model (DEFAULT_MODEL; `explicit` is accepted for old callers and ignored)."""
    return named_ref(DEFAULT_MODEL)


def lite_ref() -> ModelRef:
    """MING-lite: the LoRA adapter scripts/ming_lite.sh builds, on its embedded base (the 0.5B)."""
    if not lite.available():
        raise ModelNotFoundError(f"this install of ming has no MING-lite adapter ({lite.ADAPTER_DIR} is missing); "
                                 f"build it with `bash scripts/ming_lite.sh`, or use --model base")
    return ModelRef("lora", lite.ADAPTER_DIR, lite.NAME, base=embedded_ref(lite.BASE), spec=lite.NAME)


def embedded_ref(key: str | None = None) -> ModelRef:
    """An embedded model (default: the one under the default model), assembled from its parts on first use."""
    m = embedded.get(key or base_key())
    p = embedded.ensure_gguf(m, show_progress=sys.stderr.isatty())
    return ModelRef("gguf", p, f"embedded:{m.name}", embedded=True, spec=m.key)


def _listing(path: Path) -> str:
    try:
        names = sorted(x.name for x in path.iterdir())
    except OSError:
        return "nothing (cannot read the folder)"
    return ", ".join(names[:8]) + (" …" if len(names) > 8 else "") if names else "an empty folder"


def _local_or_download(spec: str, allow_download: bool) -> Path:
    p = Path(spec).expanduser()
    if p.exists():
        return p.resolve()
    looks_like_hub = "/" in spec and not spec.startswith((".", "/", "~")) and spec.count("/") == 1
    if not looks_like_hub:
        raise ModelNotFoundError(f"model path {spec!r} does not exist. `ming models` lists the models on this machine.")
    if not allow_download:
        raise ModelNotFoundError(
            f"{spec!r} is not a local path. ming never downloads silently: to fetch it from the Hugging Face Hub, "
            f"add --allow-download (or set MING_ALLOW_DOWNLOAD=1); or pass a local folder / .gguf file."
        )
    try:
        from huggingface_hub import snapshot_download

        print(f"[ming] downloading {spec} from the Hugging Face Hub …", file=sys.stderr)
        return Path(snapshot_download(spec))
    except Exception as exc:  # network errors come in many types
        raise ModelNotFoundError(
            f"could not download {spec!r} ({type(exc).__name__}: {exc}). This machine may be offline "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!r}); download it elsewhere and pass the folder."
        ) from exc


# ---------------------------------------------------------------------------------------------
# Cache of converted copies (GGUF -> tokenizer / safetensors)
# ---------------------------------------------------------------------------------------------
def _gguf_key(path: Path) -> str:
    for m in embedded.MODELS.values():
        if path.resolve() == embedded.gguf_path(m).resolve():
            return m.name
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:10]
    return f"{path.stem}-{h}"


def converted_dir(ref: ModelRef) -> Path:
    return envs.ming_home() / "converted" / _gguf_key(ref.path)


def atomic_save(target: Path, save) -> Path:
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    if ref.kind == "lora":
        if (ref.path / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(ref.path)
        return load_tokenizer(ref.base)
    if ref.kind == "hf":
        return AutoTokenizer.from_pretrained(ref.path)
    target = converted_dir(ref) / "tokenizer"
    if not (target / "tokenizer_config.json").is_file():
        print("[ming] reading the tokenizer from the GGUF file (first run only) …", file=sys.stderr)
        tok = AutoTokenizer.from_pretrained(ref.path.parent, gguf_file=ref.path.name)
        atomic_save(target, tok.save_pretrained)
    return AutoTokenizer.from_pretrained(target)


def trained_template(ref: ModelRef) -> str | None:
    """The conversation template a checkpoint was fine-tuned with by `ming train` (its train_config.yaml)."""
    cfg = ref.path / "train_config.yaml" if ref.path.is_dir() else None
    if cfg is None or not cfg.is_file():
        return None
    import yaml

    try:
        return (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("conv_template")
    except (OSError, yaml.YAMLError):
        return None


def model_type(ref: ModelRef) -> str | None:
    """The architecture name (config.model_type) without loading weights."""
    if ref.kind == "lora":
        return model_type(ref.base)
    if ref.kind == "hf":
        try:
            return json.loads((ref.path / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            return None
    try:
        return gguf_meta.architecture(ref.path)
    except Exception:  # noqa: BLE001 - metadata is a hint only
        return None


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise MingError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
        if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise MingError("--device mps was asked for but MPS is not available; use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype != "auto":
        if dtype not in table:
            raise MingError(f"unknown --dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
        return table[dtype]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def hf_checkpoint_dir(ref: ModelRef) -> Path:
    """A folder transformers can load quickly: the HF folder itself, or for a GGUF a safetensors copy
    converted once (dequantizing a GGUF takes ~45 s here; reloading the copy takes a few seconds)."""
    if ref.kind == "hf":
        return ref.path
    if ref.kind == "lora":
        return hf_checkpoint_dir(ref.base)
    target = converted_dir(ref) / "model"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM

    print(f"[ming] converting {ref.path.name} to a safetensors copy for transformers (first run only, ~1 min) …",
          file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(ref.path.parent, gguf_file=ref.path.name, dtype=torch.float32)
    # transformers refuses to save a model that was loaded through a quantizer; the weights are plain
    # dequantized tensors by now, so drop that bookkeeping before saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok = load_tokenizer(ref)

    def save(d: Path):
        model.save_pretrained(d)
        tok.save_pretrained(d)

    return atomic_save(target, save)


def load_hf_model(ref: ModelRef, device: str = "auto", dtype: str = "auto", merge_lora: bool = True):
    """Load (model, tokenizer) with transformers. LoRA adapters are applied (and merged for speed when
    merge_lora)."""
    from transformers import AutoModelForCausalLM

    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    ckpt = hf_checkpoint_dir(ref)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch_dtype)
    tok = load_tokenizer(ref)
    if ref.kind == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref.path)
        if merge_lora:
            model = model.merge_and_unload()
    model.to(dev)
    model.eval()
    return model, tok


def context_length(config: Any, default: int = 2048) -> int:
    for key in ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return default  # e.g. Bloom (ALiBi) has no fixed limit; bloomz was trained with 2048


# ---------------------------------------------------------------------------------------------
# Listing (ming models)
# ---------------------------------------------------------------------------------------------
def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_local() -> list[dict]:
    """One row per embedded model (its parts and its assembled GGUF), MING-lite, and the converted copies and other
    GGUFs in the cache. `default` marks the row of the default model."""
    rows = []
    default = named_default_key()
    for m in embedded.MODELS.values():
        found = embedded.parts(m)
        have = sum(1 for p in found if p.path)
        g = embedded.gguf_path(m)
        status = ("verified" if embedded.is_ready(m) else "unverified" if g.exists()
                  else f"{have}/{m.n_parts} parts" if have < m.n_parts else "parts installed, not assembled")
        where = str(found[0].path.parent.parent.parent) if found[0].path else "-"  # site-packages
        rows.append({"name": m.key, "kind": f"embedded {m.title}", "status": status,
                     "size": g.stat().st_size if g.exists() else sum(p.size for p in found),
                     "path": str(g) if g.exists() else where, "default": m.key == default})
    rows.append({"name": lite.NAME, "kind": f"LoRA on {lite.BASE} (ming_lite.sh)",
                 "status": "ready" if lite.available() else "not built (ming_lite.sh)",
                 "size": _size(lite.ADAPTER_DIR) if lite.ADAPTER_DIR.is_dir() else 0, "path": str(lite.ADAPTER_DIR),
                 "default": default == lite.NAME})
    conv = envs.ming_home() / "converted"
    if conv.is_dir():
        for p in sorted(conv.glob("lora-*.gguf")):
            rows.append({"name": p.stem, "kind": "GGUF LoRA (converted)", "status": "ready", "size": p.stat().st_size,
                         "path": str(p)})
        for d in sorted(conv.iterdir()):
            for sub, kind in (("model", "safetensors (converted)"), ("tokenizer", "tokenizer (converted)")):
                if (d / sub).is_dir():
                    rows.append({"name": d.name, "kind": kind, "status": "ready", "size": _size(d / sub),
                                 "path": str(d / sub)})
    other = envs.ming_home() / "models"
    if other.is_dir():
        known = {m.filename for m in embedded.MODELS.values()}
        for p in sorted(other.glob("*.gguf")):
            if p.name not in known:
                rows.append({"name": p.name, "kind": "gguf", "status": "ready", "size": p.stat().st_size,
                             "path": str(p)})
    return rows


def named_default_key() -> str:
    """The short name of the default model ("1.5b", "ming-lite")."""
    d = DEFAULT_MODEL.lower()
    return lite.NAME if d in lite.ALIASES else embedded.get(d).key
