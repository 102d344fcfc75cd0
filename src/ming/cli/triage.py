"""`ming triage [FILE|-]`: red-flag triage of messages, one JSON line out per message in."""

from __future__ import annotations

import argparse
import json
import sys

from ming import envs
from ming.config import ModelOptions
from ming.engine import create_engine
from ming.engine.select import embedded_runnable
from ming.errors import MingError
from ming.safety import ngram_triage, probe_triage
from ming.safety.model_triage import DEFAULT_THRESHOLD, ON_BY_DEFAULT, ModelTriage
from ming.safety.probe_triage import FirstOf
from ming.safety.policy import MODEL_RULE_ID, SafetyPolicy, asks_model
from ming.safety.triage import Triage, default_triage

_MAX_CHARS = 20000


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text,
        description="Read messages (one per line, or JSONL with a 'text' field and optional 'context' list of "
                    "earlier user messages and 'id') and print one JSON line per message: "
                    "{emergency, rule_ids, categories, escalation}. Where no rule fires, a character n-gram "
                    "classifier (package data, ~0.1 ms a message) scores the message; the triage probe (a linear "
                    "probe on the embedded 0.5B's hidden state) and the embedded 1.5B's constrained 是/否 are asked "
                    "after it only when named. --ngram none --model none keeps to the rules (< 1 ms a message).")
    p.add_argument("file", nargs="?", default="-", help="input file; '-' (default) reads stdin")
    p.add_argument("--conversation", action="store_true",
                   help="treat the lines as ONE conversation: each message is triaged with up to 11 earlier ones "
                        "(findings add up) and an escalation is printed only the first time its category fires")
    p.add_argument("--max-chars", type=int, default=_MAX_CHARS,
                   help=f"longest message accepted, in characters (default {_MAX_CHARS}); longer lines are "
                        "reported as errors")
    p.add_argument("--rules", default=None, help="a triage rule YAML to use instead of the packaged one")
    p.add_argument("--no-escalation", action="store_true", help="leave the escalation text out of the output")
    p.add_argument("--model", default=None,
                   help="the model asked a constrained 是/否 where no rule fires: auto (default, or $MING_TRIAGE_MODEL: "
                        "the embedded 1.5B when installed and llama.cpp is and the n-gram step and the probe are off, "
                        "else none), none (no yes/no), or 1.5b, 0.5b, a .gguf or a model folder. A line it was asked about gets "
                        "\"model\": {step, p_yes, threshold, fired, seconds, prompt_tokens} and emergency = rules OR model "
                        "(rule id MODEL-TRIAGE); health-education questions are not asked")
    p.add_argument("--ngram", default=None, choices=("on", "none"),
                   help="the character n-gram classifier where no rule fires: on (default, or $MING_TRIAGE_NGRAM) or "
                        "none. A line it scored gets \"model\": {step: ngram, p_yes, threshold, fired, ...}")
    p.add_argument("--ngram-threshold", type=float, default=None,
                   help="p at or above which the n-gram step flags a message, in [0, 1] (default: the packaged one's, "
                        "chosen leave-presentation-out in bench/triage_ngram.py)")
    p.add_argument("--probe", default=None, choices=("auto", "on", "none"),
                   help="the triage probe, asked after the n-gram step where it does not fire: auto (default, or "
                        "$MING_TRIAGE_PROBE: off), on (needs llama.cpp and the embedded 0.5B), or none. A line it "
                        "scored gets \"model\": {step: probe, p_yes, threshold, fired, ...}; when it or the n-gram "
                        "step is on, --model auto asks no yes/no (name a model to ask it last)")
    p.add_argument("--probe-threshold", type=float, default=None,
                   help="p at or above which the probe flags a message, in [0, 1] (default: the packaged probe's, "
                        "chosen leave-presentation-out in bench/triage_probe.py)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"p(是) at or above which --model flags a message, in [0, 1] (default {DEFAULT_THRESHOLD})")
    p.set_defaults(func=run)
    return p


def _read(path: str) -> tuple[str, list[str]]:
    name = "<stdin>" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except FileNotFoundError:
        raise MingError(f"no such file: {path}; pass a text/JSONL file or '-' for stdin") from None
    except IsADirectoryError:
        raise MingError(f"{path} is a folder; pass a text/JSONL file (one message per line) or '-' for stdin") from None
    except PermissionError:
        raise MingError(f"cannot read {path} (permission denied)") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise MingError(f"{name} looks binary (NUL byte at byte {nul}); pass UTF-8 text, one message per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MingError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it with iconv first") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise MingError(f"{name} has no messages (it is empty or blank); pass one message per line, e.g. "
                        f"echo '胸口疼，出冷汗' | ming triage")
    return name, lines


def auto_model() -> tuple[str | None, str]:
    """The model `--model auto` asks: the embedded one measured for it (ON_BY_DEFAULT) when its GGUF is assembled
    or its parts are installed, and llama.cpp is installed; else None. The second value says which, or why not."""
    key = ON_BY_DEFAULT[0]
    ok, why = embedded_runnable(key)
    return (key if ok else None), why


def _ngram(args):
    """The n-gram step (None when off)."""
    if not ngram_triage.resolve(None if args.ngram is None else args.ngram == "on"):
        return None
    if args.ngram_threshold is not None and not 0.0 <= args.ngram_threshold <= 1.0:
        raise MingError(f"--ngram-threshold is a probability in [0, 1], got {args.ngram_threshold}")
    judge = ngram_triage.NgramTriage(threshold=args.ngram_threshold)
    print(f"ming triage: rules, then the n-gram classifier where no rule fires (p >= {judge.threshold:.3f}); "
          "--ngram none --model none for the rules alone", file=sys.stderr)
    return judge


def _probe(args):
    """The triage probe (None when off: the default), loaded after the input was read."""
    choice = args.probe or probe_triage.env_setting()
    if choice in ("none", "auto"):
        return None
    if args.probe_threshold is not None and not 0.0 <= args.probe_threshold <= 1.0:
        raise MingError(f"--probe-threshold is a probability in [0, 1], got {args.probe_threshold}")
    ok, why = probe_triage.available()
    if not ok:
        raise MingError(f"--probe on: the triage probe cannot run: {why}")
    judge = probe_triage.ProbeTriage(threshold=args.probe_threshold)
    print(f"ming triage: then the triage probe on {why} where no earlier step fires (p >= {judge.threshold:.3f}); "
          "--probe none leaves it out", file=sys.stderr)
    return judge


def _judge(args, step_on: bool = False):
    """The model's yes/no (None for the rules alone), loaded after the input was read; `--model auto` asks none
    when the n-gram step or the probe is on."""
    choice = (args.model or envs.triage_model()).strip()
    if choice.lower() == "none" or (choice.lower() == "auto" and step_on):
        return None
    if not 0.0 <= args.threshold <= 1.0:
        raise MingError(f"--threshold is a probability in [0, 1], got {args.threshold}")
    if choice.lower() == "auto":
        choice, why = auto_model()
        if choice is None:
            print(f"ming triage: rules only: {why}", file=sys.stderr)
            return None
        print(f"ming triage: rules, then {why} asked 是/否 where no rule fires (p(是) >= {args.threshold}); "
              "--model none for the rules alone", file=sys.stderr)
        return ModelTriage(create_engine(ModelOptions(model_path=choice, backend="llamacpp")), threshold=args.threshold)
    return ModelTriage(create_engine(ModelOptions(model_path=choice)), threshold=args.threshold)


def run(args) -> int:
    tri = Triage.from_file(args.rules) if args.rules else default_triage()
    name, lines = _read(args.file)
    steps = [s for s in (_ngram(args), _probe(args)) if s is not None]
    judge = _judge(args, bool(steps))
    steps += [judge] if judge is not None else []
    judge = FirstOf(steps) if len(steps) > 1 else steps[0] if steps else None
    model_text, model_shown = "", False
    if judge is not None:
        model_text = SafetyPolicy(triage=tri).model_escalation()
    history: list[dict] = []
    escalated: set[str] = set()
    bad = 0
    out = sys.stdout
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row: dict = {}
        if len(line) > args.max_chars:
            bad += 1
            msg = f"line is {len(line)} characters; the limit is {args.max_chars} (--max-chars)"
            print(f"ming triage: {name}:{n}: {msg}; skipped", file=sys.stderr)
            out.write(json.dumps({"line": n, "error": msg}, ensure_ascii=False) + "\n")
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise ValueError("needs a string field 'text'")
                ctx = row.get("context") or []
                if not isinstance(ctx, list) or not all(isinstance(c, str) for c in ctx):
                    raise ValueError("'context' must be a list of strings")
            except ValueError as exc:
                bad += 1
                print(f"ming triage: {name}:{n}: bad JSON row ({exc}); skipped", file=sys.stderr)
                out.write(json.dumps({"line": n, "error": str(exc)}, ensure_ascii=False) + "\n")
                continue
            text, context = row["text"], list(row.get("context") or [])
        else:
            text, context = line, []
        if args.conversation:
            history += [{"role": "user", "content": c} for c in context] + [{"role": "user", "content": text}]
            conv = tri.assess_conversation(history, escalated)
            escalated = conv.escalated
            res, escalation = conv.result, conv.escalation
        else:
            res = tri.check(text, context)
            escalation = res.escalation
        rec = {"emergency": res.emergency, "rule_ids": res.rule_ids, "categories": res.categories}
        turns = [m["content"] for m in history] if args.conversation else context + [text]
        if judge is not None and not res.emergency and asks_model(tri, turns):  # where the rules are silent
            v = judge.assess(turns)
            rec["model"] = v.to_dict()
            if v.fired:
                rec.update(emergency=True, rule_ids=[MODEL_RULE_ID])
                escalation = "" if args.conversation and model_shown else model_text
                model_shown = True
        if not args.no_escalation:
            rec["escalation"] = escalation
        if "id" in row:
            rec = {"id": row["id"], **rec}
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if bad:
        print(f"ming triage: {bad} bad row(s) in {name} (reported above with line numbers)", file=sys.stderr)
        return 1
    return 0
