"""A multi-turn conversation: history and the commands users type. Each turn is prepared and fitted to
the context window by ming/respond.py; history the window dropped stays dropped."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ming.consult.stage import why_text
from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.respond import Pipeline, ReplyEvent, Turn
from ming.templates import Message

HELP = """命令 / commands:
  new chat 或 /reset   开始新的对话 (start over)
  /undo               撤回上一轮问答 (drop the last exchange)
  /save FILE          保存对话记录为 JSON (save the transcript; /save! FILE overwrites a file)
  /why                问诊思路：候选疾病、已知情况、下一个问题 (consult mode: candidates and what is known)
  /help               显示本帮助
  /exit               退出 (or Ctrl-D); Ctrl-C 停止当前回答 (stops the current answer)"""


@dataclass
class Command:
    name: str  # reset | undo | save | help | why | exit
    arg: str = ""
    force: bool = False  # /save! FILE: overwrite


def parse_command(line: str) -> Command | None:
    """A command is the whole line: `new chat`, or a line starting with `/`. A question that merely
    contains the words "new chat" is a question."""
    s = line.strip()
    if s.lower() in ("new chat", "/reset", "/new", "/clear"):
        return Command("reset")
    if not s.startswith("/"):
        return None
    name, _, arg = s[1:].partition(" ")
    name = name.lower()
    aliases = {"quit": "exit", "q": "exit", "exit": "exit", "undo": "undo", "save": "save", "help": "help", "h": "help",
               "?": "help", "why": "why"}
    if name in aliases:
        return Command(aliases[name], arg.strip())
    if name == "save!":
        return Command("save", arg.strip(), force=True)
    return Command("unknown", s)


class Session:
    """History and commands over `Pipeline` (ming/respond.py), which fits, checks and renders each turn."""

    def __init__(self, pipeline: Pipeline, gen: GenerationConfig):
        self.pipeline = pipeline
        self.engine = pipeline.engine
        self.gen = gen
        self.history: list[Message] = []  # user/assistant, alternating
        self.truncation_noted = False
        self.last_turn: Turn | None = None

    @property
    def system(self) -> str | None:
        return self.pipeline.system_prompt()

    @property
    def last_dropped(self) -> int:
        return self.last_turn.dropped if self.last_turn is not None else 0

    def reset(self) -> None:
        self.history.clear()
        self.truncation_noted = False
        self.last_turn = None
        self.engine.reset_cache()

    def undo(self) -> bool:
        if len(self.history) < 2:
            return False
        del self.history[-2:]
        return True  # the engine's prefix cache notices the shorter prompt by itself

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the transcript as JSON; a MingError (the session untouched) for a folder, an existing file
        without `overwrite`, or a path that cannot be written."""
        p = Path(path).expanduser()
        if p.is_dir():
            raise MingError(f"{p} is a folder; give a file name, e.g. /save {p / 'chat.json'}")
        if p.exists() and not overwrite:
            raise MingError(f"{p} exists; /save! {path} overwrites it, or pick another name")
        data = {"model": self.engine.name, "template": self.engine.template.name, "system": self.system,
                "messages": self.history}
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        except OSError as exc:
            raise MingError(f"cannot save to {p} ({exc.strerror}); the conversation is kept: /save to another "
                            "path") from None
        return p

    def why(self) -> str:
        """`/why`: the consultation controller's reasoning at the last turn (candidates, what is known)."""
        turn = self.last_turn
        stage = self.pipeline.stage("consult")
        if stage is not None and getattr(stage, "unavailable", ""):
            return f"（没有知识库，问诊控制器未启用 / no knowledge base, no consultation controller: {stage.unavailable}）"
        return why_text(turn.meta.get("consult") if turn is not None else None,
                        turn.mode if turn is not None else self.pipeline.mode)

    def notices(self) -> list[tuple[str, str]]:
        """The last turn's notes as (kind, text); that history was dropped is said once per conversation."""
        if self.last_turn is None:
            return []
        out = list(self.last_turn.notices.items())
        if self.last_turn.dropped:
            if self.truncation_noted:
                out = [(k, t) for k, t in out if k != "dropped"]
            self.truncation_noted = True
        return out

    def ask(self, question: str, cancel: threading.Event | None = None) -> Iterator[ReplyEvent]:
        """Answer `question`; the exchange is added to history when the reply is done (also when it
        was stopped with Ctrl-C: what was shown is kept)."""
        turn = self.pipeline.prepare(self.history + [{"role": "user", "content": question}], self.gen)
        self.last_turn = turn
        if turn.dropped:  # history before the kept window is gone for good: later turns stay consistent
            self.history = self.history[2 * turn.dropped:]
        for ev in self.pipeline.stream(turn, cancel):
            if ev.kind == "done":
                self.history += [{"role": "user", "content": question},
                                 {"role": "assistant", "content": ev.result.model_text}]
            yield ev
