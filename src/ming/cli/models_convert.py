"""`ming models convert SRC --out FILE.gguf --outtype q4_k_m`: a Hugging Face checkpoint (or a LoRA
adapter, merged into its base) -> GGUF for the llama.cpp backend. See ming.convert."""

from __future__ import annotations

import argparse

from ming.models.convert import OUTPUT_TYPES, convert

OUTTYPES = ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_k_s", "q4_0")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert", help="HF checkpoint (or LoRA adapter) -> GGUF for the fast CPU engine",
        description="Convert a Hugging Face checkpoint folder (Qwen2/Qwen1.5/Qwen3), or a LoRA adapter (merged into "
                    "its base first), to a GGUF file that `ming chat --model-path FILE.gguf` runs with llama.cpp. "
                    "A .gguf source is re-quantized.")
    p.add_argument("src", help="HF checkpoint folder, LoRA adapter folder, or .gguf file (re-quantized)")
    p.add_argument("--out", required=True, help="output file, ending in .gguf")
    p.add_argument("--outtype", default="q4_k_m", choices=OUTTYPES,
                   help="weight type: f16 (exact, 2 bytes/weight), q8_0 (~1.06 bytes/weight, near lossless), "
                        "q4_k_m (~0.6 bytes/weight, llama.cpp's usual choice) (default %(default)s)")
    p.add_argument("--output-type", default=None, choices=tuple(OUTPUT_TYPES),
                   help="type of the output layer (the token embedding when tied) instead of the mixture's (Q6_K "
                        "for the k-quants); q4_k with --outtype q4_k_s gives the 1.5B that serves 8 clients fastest "
                        "on CPU (docs/serve.md)")
    p.add_argument("--threads", type=int, default=None, help="threads for quantizing (default: all cores)")
    p.set_defaults(convert_func=run)
    return p


def run(args: argparse.Namespace) -> int:
    info = convert(args.src, args.out, args.outtype, threads=args.threads, output_type=args.output_type)
    size = info["size"] / 1e6
    out_layer = f", output layer {info['output_type']}" if info.get("output_type") else ""
    print(f"wrote {info['out']} ({info['outtype']}{out_layer}, {size:.1f} MB, arch {info.get('arch')})")
    print(f"run it: ming chat --model-path {info['out']}")
    return 0
