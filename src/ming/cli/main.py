"""The `ming` command. Each subcommand lives in its own module under ming.cli with
`add_parser(subparsers)` and `run(args) -> int`; modules are imported lazily so that
`ming --help` never imports torch."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ming import __version__
from ming.config import Parser
from ming.errors import MingError

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("ming.cli.chat", "multi-turn medical chat in the terminal (医疗问答 / 智能问诊)"),
    "serve": ("ming.cli.serve", "OpenAI-compatible HTTP server and web consultation page"),
    "data": ("ming.cli.data", "build, check and convert instruction data (the MING mix)"),
    "train": ("ming.cli.train", "supervised fine-tuning (full / LoRA / QLoRA), merge and export"),
    "eval": ("ming.cli.eval", "medical benchmarks and simulated-patient consultations"),
    "triage": ("ming.cli.triage", "red-flag emergency triage of messages, one JSON line each"),
    "kb": ("ming.cli.kb", "medical knowledge base for 智能问诊: build, inspect, replay a consultation"),
    "report": ("ming.cli.report", "parse a lab / physical-exam report into graded findings"),
    "models": ("ming.cli.models", "list local models; prepare the embedded model; convert to GGUF"),
    "env": ("ming.cli.env", "print versions, devices and settings for bug reports"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = Parser(  # subcommand parsers are Parsers too: their settings are filled (defaults < YAML < flags)
        prog="ming",
        description="明医 MING — chat with, serve, build data for, fine-tune and evaluate a Chinese medical LLM.",
    )
    parser.add_argument("--version", action="version", version=f"ming {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (its parser needs it); the rest are
    # listed by name so `ming --help` stays instant.
    chosen = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("ming"):
                    sub.add_parser(name, help=help_text + " [not available in this build]")
                    continue
                raise
            mod.add_parser(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP reads its wait policy when torch / llama.cpp first load it: training sleeps while it waits
    # (PASSIVE), set before anything loads OpenMP; generation keeps the default and adapts its thread count
    # to the free cores instead (see ming.engine.threads)
    if argv[:1] == ["train"]:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except MingError as exc:  # a --config file that cannot be used
        print(f"ming {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    if not args.command:
        parser.print_help()
        return 0
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"'{args.command}' is not available in this build")
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("\n[ming] interrupted", file=sys.stderr)
        return 130
    except MingError as exc:
        print(f"ming {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
