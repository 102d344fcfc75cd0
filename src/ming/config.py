"""Settings dataclasses shared by the subcommands, and the one rule for combining them:
defaults < `--config` YAML < command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ming.errors import MingError

T = TypeVar("T")


@dataclass
class ModelOptions:
    """Which model to load and how (shared by chat, serve, eval)."""

    model_path: str | None = None  # None = the embedded default model
    model_base: str | None = None  # base model when model_path is a LoRA adapter
    conv_template: str | None = None  # None = detect from the model
    backend: str = "auto"  # auto | hf | llamacpp | vllm
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    threads: int | None = None  # CPU threads; None = MING_THREADS or all cores
    context_length: int | None = None  # None = the model's own
    prefix_cache: bool = True  # reuse the KV cache across turns
    allow_download: bool = False  # let model_path be a Hugging Face Hub id
    tensor_parallel_size: int = 1  # vllm only


def from_namespace(cls: type[T], ns: Any) -> T:
    """Build a dataclass from an argparse namespace, taking the fields the namespace has."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(ns).items() if k in names})


def merge(cls: type[T], yaml_path: str | Path | None = None, overrides: dict | None = None) -> T:
    """defaults < YAML < overrides (keys with value None in overrides are ignored)."""
    values: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(cls)}
    if yaml_path:
        import yaml

        p = Path(yaml_path)
        if not p.is_file():
            raise MingError(f"config file {p} does not exist")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise MingError(f"config file {p} must hold a mapping of settings, found {type(loaded).__name__}")
        unknown = sorted(set(loaded) - fields)
        if unknown:
            raise MingError(f"config file {p} has unknown settings {unknown}; known: {sorted(fields)}")
        values.update(loaded)
    for k, v in (overrides or {}).items():
        if k in fields and v is not None:
            values[k] = v
    return cls(**values)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
