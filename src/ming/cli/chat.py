"""`ming chat`: the multi-turn medical console (医疗问答 / 智能问诊)."""

from __future__ import annotations

import argparse
import sys

from ming import DISCLAIMER
from ming.cli.common import (
    GENERATION_GROUP,
    MODEL_GROUP,
    generation_config,
    model_options,
)
from ming.config import ChatOptions, ModelOptions, add_settings
from ming.engine import create_engine
from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.respond import Pipeline
from ming.safety import ngram_triage, probe_triage
from ming.safety.model_triage import measured_engine, on_by_default
from ming.session import HELP, Session, parse_command
from ming.stages import build, stage_options


def add_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, description=(
        "Talk to a medical model over many turns. Type `new chat` to start over, /help for commands. "
        "With no --model-path the embedded default model runs offline on CPU."))
    add_settings(p, ModelOptions, GenerationConfig, ChatOptions, groups=(MODEL_GROUP, GENERATION_GROUP, "chat"))
    p.add_argument("--once", metavar="QUESTION", default=None, help="answer one question, print it and exit")
    p.add_argument("--plain", action="store_true", help="no colours or Markdown rendering even on a terminal")
    p.set_defaults(func=run)
    return p


class PlainIO:
    """Pipes and --plain: read lines, write text as it streams."""

    def __init__(self, out=sys.stdout, err=sys.stderr):
        self.out, self.err, self.interactive = out, err, False

    def read(self, prompt: str) -> str | None:
        line = sys.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def info(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def begin_answer(self) -> None:
        self.out.write("明医: ")
        self.out.flush()

    def stream(self, text: str, kind: str) -> None:
        self.out.write(text)
        self.out.flush()

    def end_answer(self) -> None:
        self.out.write("\n")
        self.out.flush()


class RichIO(PlainIO):
    """A terminal: prompt with line editing, answers rendered as Markdown while they stream."""

    def __init__(self):
        super().__init__()
        from rich.console import Console

        self.console = Console()
        self.interactive = True
        self._live = None
        self._text = ""

    def read(self, prompt: str) -> str | None:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        try:
            return input(prompt)
        except EOFError:
            return None

    def info(self, text: str) -> None:
        self.console.print(text, style="dim", highlight=False, markup=False)

    def begin_answer(self) -> None:
        from rich.live import Live

        self._text = ""
        self.console.print("[bold green]明医:[/bold green]")
        self._live = Live(console=self.console, refresh_per_second=8, vertical_overflow="visible")
        self._live.start()

    def stream(self, text: str, kind: str) -> None:
        from rich.markdown import Markdown

        self._text += text
        self._live.update(Markdown(self._text))

    def end_answer(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    gen = generation_config(args)
    io = RichIO() if (sys.stdin.isatty() and sys.stdout.isatty() and not args.plain and args.once is None) else PlainIO()
    io.info(f"明医 MING — {DISCLAIMER}")
    if gen.num_beams > 1 and (args.temperature not in (0, 1.0) or args.top_p < 1 or args.top_k):
        io.info(f"[ming] beam search ({gen.num_beams} beams) decodes deterministically: temperature, top-p and "
                "top-k are ignored")
    opts = model_options(args)
    probe, _ = probe_triage.resolve(args.triage_probe, args.safety)
    ngram = ngram_triage.resolve(args.triage_ngram, args.safety)
    judge = args.triage_model
    if judge is None:  # on by default where it was measured (model_triage.ON_BY_DEFAULT), unless a cheaper step is on
        judge = (args.safety != "off" and not probe and not ngram
                 and on_by_default(opts.model_path, opts.model_base, opts.backend))
    # English messages, which the n-gram step does not read, go to the model's yes/no where it was measured (the
    # embedded 1.5B on llama.cpp: decided when the stage binds the engine, as in serve)
    english = ngram and not judge and args.triage_model is None and args.safety != "off"
    stages = build(stage_options(args.safety, args.mode, retrieval=args.retrieval, stages_off=args.stages_off,
                                 triage_model=args.triage_threshold if judge else None, triage_probe=probe,
                                 triage_ngram=ngram, triage_english=english))
    # the model triage step scores on a second KV sequence (llama.cpp), so the conversation's cache stays
    engine = create_engine(opts, need_beam=gen.num_beams > 1, scoring_sequence=judge)
    if any(getattr(s, "ngram", False) for s in stages):  # not with --stages-off safety
        io.info("[ming] n-gram triage on: where no red-flag rule fires, a character n-gram classifier scores the "
                "message (escalates at the packaged threshold; --no-triage-ngram turns it off)"
                + ("; a message mostly in English is read by the model's yes/no instead (--no-triage-model turns "
                   "that off)" if english and measured_engine(engine) else ""))
    if any(getattr(s, "probe", False) for s in stages):
        io.info("[ming] triage probe on: where no red-flag rule fires, the embedded 0.5B's reading of the message is "
                "scored (escalates at the packaged threshold; --no-triage-probe turns it off)")
    if judge:
        io.info(f"[ming] model triage on: where no red-flag rule fires, the model is asked 是/否 (escalates at p >= "
                f"{args.triage_threshold}; --no-triage-model turns it off)")
    session = Session(Pipeline(engine, stages, mode=args.mode, system=args.system), gen)

    stages_named = {s.name for s in stages}
    cancel = threading.Event()
    answering = threading.Event()

    def on_sigint(signum, frame):
        if answering.is_set():
            cancel.set()  # stop this answer, keep the session
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)

    def answer(question: str) -> None:
        cancel.clear()
        answering.set()
        io.begin_answer()
        try:
            for ev in session.ask(question, cancel):
                if ev.kind in ("text", "added"):
                    io.stream(ev.text, ev.kind)
                elif ev.kind == "done":
                    io.end_answer()
                    if ev.result.finish == "cancelled":
                        io.info("[ming] answer stopped (Ctrl-C); the conversation continues")
                    elif ev.result.finish == "length":
                        io.info(f"[ming] the answer was cut at the length limit ({session.gen.max_new_tokens} new "
                                "tokens, or the context window); --max-new-tokens N allows longer answers")
        finally:
            answering.clear()
        for kind, text in session.notices():
            io.info(f"[ming {kind}] {text}" if kind in stages_named else f"[ming] {text}")

    if args.once is not None:
        answer(args.once)
        return 0

    io.info(f"[ming] model: {engine.name} · backend: {engine.backend} · template: {engine.template.name} · "
            f"mode: {args.mode} · safety: {args.safety}. Type /help for commands, `new chat` to start over.")
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")  # bytes that are not UTF-8 get an error line below
    while True:
        try:
            line = io.read("\n用户: ")
        except KeyboardInterrupt:
            io.info("")
            return 0
        if line is None:  # EOF
            return 0
        if not line.strip():
            continue
        bad = not_utf8(line)
        if bad:
            io.info(f"[ming] this line is not UTF-8 text ({bad}) and was not sent; the conversation is kept "
                    "(is the terminal set to GBK? set it to UTF-8)")
            continue
        cmd = parse_command(line)
        if cmd is None:
            try:
                answer(line)
            except MingError as exc:
                io.end_answer()
                io.info(f"[ming] {exc}")
            continue
        if cmd.name == "exit":
            return 0
        if cmd.name == "reset":
            session.reset()
            io.info("[ming] === new chat === (history cleared)")
        elif cmd.name == "undo":
            io.info("[ming] last exchange removed" if session.undo() else "[ming] nothing to undo")
        elif cmd.name == "save":
            if not cmd.arg:
                io.info("[ming] usage: /save FILE")
            else:
                try:
                    io.info(f"[ming] saved to {session.save(cmd.arg, overwrite=cmd.force)}")
                except MingError as exc:
                    io.info(f"[ming] {exc}")
        elif cmd.name == "help":
            io.info(HELP)
        elif cmd.name == "why":
            io.info(session.why())
        else:
            io.info(f"[ming] unknown command {cmd.arg!r}; /help lists the commands")


def not_utf8(line: str) -> str | None:
    """Where `line` (read with surrogateescape) holds a byte that was not UTF-8, e.g. "byte 0xff at
    character 0"; None for text."""
    try:
        line.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        code = ord(line[exc.start])
        what = f"byte 0x{code - 0xdc00:02x}" if 0xdc80 <= code <= 0xdcff else f"the lone surrogate \\u{code:04x}"
        return f"{what} at character {exc.start}"
