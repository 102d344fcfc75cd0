"""`ming train`: supervised fine-tuning (full / LoRA / QLoRA) on ming JSONL, ShareGPT or Alpaca data;
`ming train merge`: fold a LoRA adapter into its base model."""

from __future__ import annotations

import argparse

from ming.train import config as train_config
from ming.train.config import add_flags
from ming.train.launch import relaunch
from ming.train.merge import merge
from ming.train.sft import train

EPILOG = """examples:
  ming train --data train.jsonl --eval-data dev.jsonl --output runs/ming-lora          # LoRA on the embedded model
  ming train --config configs/train/lora-cpu.yaml --data train.jsonl --output runs/x   # recipe + overrides
  ming train --launcher ddp --num-processes 2 --data train.jsonl --output runs/ddp     # 2 processes (gloo on CPU)
  ming train --resume --config runs/x/train_config.yaml                                # continue a killed run
  ming train merge --model-path runs/ming-lora --output runs/ming-merged               # LoRA -> plain checkpoint
  ming chat --model-path runs/ming-lora                                                # chat with the result"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p)
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="train_action", metavar="ACTION")
    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model -> plain HF checkpoint",
                       description="Merge a LoRA adapter into its base and save a plain Hugging Face checkpoint that "
                                   "ming chat, transformers and vLLM load without peft.")
    m.add_argument("--model-path", dest="merge_adapter", required=True, help="the LoRA adapter folder (ming train output)")
    m.add_argument("--model-base", dest="merge_base", default=None,
                   help="its base model (default: the adapter's base_model_name_or_path)")
    m.add_argument("--output", dest="merge_output", required=True, help="folder for the merged checkpoint")
    m.add_argument("--dtype", dest="merge_dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (default float32)")
    m.add_argument("--allow-download", dest="merge_allow_download", action="store_true",
                   help="allow a Hub id as the base")
    m.set_defaults(func=run_merge)


def run(args) -> int:
    cfg = train_config.resolve(args)
    if cfg.launcher != "none":
        return relaunch(cfg)

    train(cfg)
    return 0


def run_merge(args) -> int:
    out = merge(args.merge_adapter, args.merge_output, args.merge_base, args.merge_dtype, args.merge_allow_download)
    print(f"[ming] merged checkpoint saved to {out}\n  chat with it:   ming chat --model-path {out}\n"
          f"  GGUF for the llama.cpp engine: ming models convert {out} --out {out}.gguf --outtype q4_k_m")
    return 0
