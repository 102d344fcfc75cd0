"""`TrainConfig`: every setting of `ming train`, in one dataclass. The command-line flags and `--config` keys come
from it (ming.config.add_settings), so each option is documented once. Precedence: defaults < `--config
recipe.yaml` < flags."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ming.config import DEVICES, DTYPES, TEMPLATES, add_settings, load, option
from ming.errors import MingError

METHODS = ("full", "lora", "qlora")
SCHEDULERS = ("cosine", "linear", "constant")
LAUNCHERS = ("none", "ddp", "zero2", "zero3", "fsdp")
PADDINGS = ("dynamic", "max")
TRUNCATIONS = ("turns", "drop")


_f = option


@dataclass
class TrainConfig:
    # data
    data: str = _f("", "training files, comma-separated: ming JSONL records, ShareGPT or Alpaca (auto-detected)")
    eval_data: str | None = _f(None, "dev files (same formats) for eval loss; none = no eval")
    output: str = _f("", "output folder: adapter or model, tokenizer, train_config.yaml, train_log.jsonl, "
                         "checkpoints/")
    system: str = _f("qa", "system prompt for records that have none: 'qa' / 'consult' (the prompts ming chat uses), "
                           "'@template' (the template's own), 'none', or literal text")
    max_len: int = _f(1024, "max tokens per sample; longer ones lose whole early exchanges, else are dropped")
    truncation: str = _f("turns", "over-long samples: 'turns' = drop whole early exchanges first, 'drop' = drop "
                                  "the sample", choices=TRUNCATIONS)
    max_dropped_fraction: float = _f(0.5, "fail if more than this fraction of the samples is dropped (0-1)")
    # model
    model_path: str | None = _f(None, "base model: HF folder, .gguf file, LoRA folder; omitted = the embedded model",
                                flags=("--model-path",))
    model_base: str | None = _f(None, "base model when --model-path is a LoRA adapter to keep training")
    conv_template: str | None = _f(None, "conversation template (default: detected from the model)",
                                   choices=TEMPLATES)
    allow_download: bool = _f(False, "allow --model-path to be a Hugging Face Hub id")
    # method
    method: str = _f("lora", "what to train: all weights, a LoRA adapter, or LoRA on a 4-bit base (CUDA)",
                     choices=METHODS)
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = _f(0.0, "LoRA dropout (0 is ~30%% faster on CPU)")
    lora_targets: str = _f("all-linear", "modules to adapt: 'all-linear' or comma-separated names (q_proj,v_proj)")
    # optimisation
    learning_rate: float = _f(2e-4, "peak learning rate")
    lr_scheduler: str = _f("cosine", "learning-rate schedule after warmup", choices=SCHEDULERS)
    warmup_ratio: float = _f(0.03, "fraction of the optimizer steps spent warming up")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm, 0 = off")
    epochs: int = _f(1, "passes over the data (ignored when --max-steps > 0)")
    max_steps: int = _f(-1, "optimizer steps to run; -1 = whole epochs")
    batch_size: int = _f(4, "samples (or packed rows) per device per micro-batch")
    grad_accum: int = _f(1, "micro-batches per optimizer step (global batch = batch_size x processes x grad_accum)")
    padding: str = _f("dynamic", "'dynamic' pads to the longest in the batch; 'max' pads every sample to --max-len "
                                 "(MING's old way; slow, for comparison)", choices=PADDINGS)
    group_by_length: bool = _f(True, "put samples of similar length in the same batch (less padding)")
    packing: bool = _f(False, "pack several samples into one --max-len row (per-sample position ids, no "
                              "attention across samples)")
    seed: int = _f(42, "seed for data order, LoRA init and dropout")
    dtype: str = _f("auto", "compute precision: auto = bf16 autocast where the hardware has it (CPU AMX, GPU), "
                            "else float32", choices=DTYPES)
    device: str = _f("auto", "device", choices=DEVICES)
    threads: int | None = _f(None, "CPU threads per process (default: MING_THREADS or cores / processes)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (less memory, ~30%% slower)")
    # bookkeeping
    logging_steps: int = _f(1, "log the loss every N optimizer steps")
    eval_steps: int = _f(0, "eval loss every N optimizer steps; 0 = only before and after training")
    eval_batch_size: int = _f(8, "samples per device per eval batch")
    save_steps: int = _f(50, "checkpoint every N optimizer steps; 0 = only at the end")
    save_total_limit: int = _f(2, "keep the newest N checkpoints")
    resume: str | None = _f(None, "continue from a checkpoint: 'auto' = the newest in OUTPUT/checkpoints, or a "
                                  "checkpoint folder", nargs="?", const="auto")
    # scale-out
    launcher: str = _f("none", "relaunch under `accelerate launch` with a packaged config", choices=LAUNCHERS)
    num_processes: int | None = _f(None, "processes in total (default: GPUs on this machine, or 2 on CPU)")
    num_machines: int = _f(1, "machines (nodes)")
    machine_rank: int = _f(0, "this machine's rank (0 = main)")
    main_process_ip: str | None = _f(None, "address of machine 0 (multi-node)")
    main_process_port: int | None = _f(None, "port on machine 0 (multi-node)")

    def data_files(self) -> list[str]:
        return _split(self.data)

    def eval_files(self) -> list[str]:
        return _split(self.eval_data)

    def validate(self) -> "TrainConfig":
        if not self.data_files():
            raise MingError("no training data: pass --data FILE[,FILE…] (ming JSONL records, ShareGPT or Alpaca); "
                            "`ming data build` makes such a file")
        if not self.output:
            raise MingError("no output folder: pass --output DIR (e.g. --output runs/ming-lora)")
        checks = [("method", METHODS), ("lr_scheduler", SCHEDULERS), ("launcher", LAUNCHERS),
                  ("padding", PADDINGS), ("truncation", TRUNCATIONS)]
        for name, allowed in checks:
            if getattr(self, name) not in allowed:
                raise MingError(f"{name} is {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        positive = ("max_len", "batch_size", "grad_accum", "lora_r", "eval_batch_size", "logging_steps")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise MingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps < 1 and self.epochs < 1:
            raise MingError("nothing to train: --epochs is below 1 and --max-steps is not set")
        if not 0 <= self.max_dropped_fraction <= 1:
            raise MingError(f"max_dropped_fraction must be between 0 and 1, got {self.max_dropped_fraction}")
        if self.packing and self.padding == "max":
            raise MingError("--packing and --padding max exclude each other (packed rows are already --max-len)")
        return self


def _split(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [s.strip() for s in str(value).split(",") if s.strip()]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, and --config."""
    add_settings(parser, TrainConfig, config_help="recipe YAML with TrainConfig settings (flags override it), e.g. "
                                                  "configs/train/lora-cpu.yaml")


def resolve(args: argparse.Namespace) -> TrainConfig:
    """defaults < --config YAML < flags."""
    cfg = load(TrainConfig, args)
    for name in ("data", "eval_data"):  # YAML may give lists
        v = getattr(cfg, name)
        if isinstance(v, (list, tuple)):
            setattr(cfg, name, ",".join(str(x) for x in v))
    return cfg.validate()


def to_yaml(cfg: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False, allow_unicode=True)


def save(cfg: TrainConfig, folder: str | Path) -> Path:
    p = Path(folder) / "train_config.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(to_yaml(cfg), encoding="utf-8")
    return p
