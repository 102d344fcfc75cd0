"""Flags shared by the subcommands that load a model (chat, serve, eval), so they read the same
everywhere. The seed's spellings (--model-path, --conv-template, --max-new-token, --beam-size) work."""

from __future__ import annotations

import argparse

from ming.config import ModelOptions, from_namespace
from ming.engine.base import GenerationConfig


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model-path", "--model", dest="model_path", default=None,
                   help="omitted = the default model (the embedded 1.5B; `ming models` says why); '1.5b', '0.5b' = "
                        "an embedded model (Qwen2.5-Coder-*-Instruct Q4_K_M, offline); 'base' = the embedded model "
                        "under the default; 'ming-lite' = the packaged adapter on the 0.5B; or a local HF folder, "
                        ".gguf file or LoRA adapter folder")
    g.add_argument("--model-base", default=None, help="base model when --model-path is a LoRA adapter (as MING does)")
    g.add_argument("--conv-template", "--template", dest="conv_template", choices=["qwen", "bloom", "hf"],
                   default=None, help="conversation template (default: detected from the model)")
    g.add_argument("--backend", default="auto", choices=["auto", "hf", "llamacpp", "vllm"],
                   help="generation backend (auto: llama.cpp for GGUF on CPU when installed, else transformers)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype for transformers (auto: bf16/fp16 on GPU, fp32 on CPU)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: MING_THREADS or all cores)")
    g.add_argument("--context-length", type=int, default=None, help="tokens of context (default: the model's)")
    g.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false",
                   help="re-encode the whole history every turn instead of reusing the KV cache")
    g.add_argument("--allow-download", action="store_true",
                   help="allow --model-path to be a Hugging Face Hub id that is downloaded (never by default)")
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model (vllm backend)")


def add_generation_args(p: argparse.ArgumentParser, max_new_tokens: int = 512, temperature: float = 0.7) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", "--max-new-token", dest="max_new_tokens", type=int, default=max_new_tokens,
                   help=f"most tokens per answer (default {max_new_tokens})")
    g.add_argument("--temperature", type=float, default=temperature, help="0 = greedy (default %(default)s)")
    g.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass, 1 = off (default %(default)s)")
    g.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens, 0 = off")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="1.0 = off")
    g.add_argument("--beam-size", "--num-beams", dest="num_beams", type=int, default=1,
                   help="beam search width; > 1 decodes deterministically (temperature, top-p, top-k ignored)")
    g.add_argument("--seed", type=int, default=None, help="seed for sampling (same seed, same answer)")


def add_safety_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--safety", default="on", choices=["on", "off", "strict"],
                   help="runtime medical safety: emergency triage, report grounding, refusal policy "
                        "(strict: emergencies get only the escalation)")


def generation_config(args):
    return GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, repetition_penalty=args.repetition_penalty, num_beams=args.num_beams,
                            seed=args.seed).validate()


def model_options(args):
    return from_namespace(ModelOptions, args)
