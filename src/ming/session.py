"""A multi-turn conversation: history, the commands users type, and cutting history to the
context window by tokens (oldest exchanges first; the system prompt and the newest question stay)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ming.engine.base import Engine, GenerationConfig
from ming.errors import MingError
from ming.respond import ReplyEvent, reply_stream
from ming.templates import Message, Template

HELP = """命令 / commands:
  new chat 或 /reset   开始新的对话 (start over)
  /undo               撤回上一轮问答 (drop the last exchange)
  /save FILE          保存对话记录为 JSON (save the transcript)
  /help               显示本帮助
  /exit               退出 (or Ctrl-D); Ctrl-C 停止当前回答 (stops the current answer)"""


@dataclass
class Command:
    name: str  # reset | undo | save | help | exit
    arg: str = ""


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
               "?": "help"}
    if name in aliases:
        return Command(aliases[name], arg.strip())
    return Command("unknown", s)


def fit_to_context(template: Template, messages: Sequence[Message], budget: int) -> tuple[list[Message], int, int]:
    """Drop the oldest user/assistant exchanges until the prompt (with generation prompt) fits in
    `budget` tokens. Returns (messages, exchanges_dropped, prompt_tokens). The system message and the
    last user message are always kept; if they alone do not fit, MingError says by how much."""
    msgs = list(messages)
    system = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
    turns = msgs[len(system):]
    dropped = 0
    while True:
        n = len(template.render(system + turns, add_generation_prompt=True).ids)
        if n <= budget:
            return system + turns, dropped, n
        if len(turns) <= 1:
            raise MingError(
                f"the question alone is {n} tokens with the system prompt, more than the {budget} tokens left in the "
                f"context window after reserving room for the answer; shorten it or lower --max-new-tokens"
            )
        turns = turns[2:]  # one user + assistant exchange
        dropped += 1


class Session:
    def __init__(self, engine: Engine, gen: GenerationConfig, system: str | None = None, policy=None):
        self.engine = engine
        self.gen = gen
        self.system = system
        self.policy = policy
        self.history: list[Message] = []  # user/assistant, alternating
        self.truncation_noted = False
        self.last_dropped = 0

    def messages(self, question: str | None = None) -> list[Message]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs += self.history
        if question is not None:
            msgs.append({"role": "user", "content": question})
        return msgs

    def reset(self) -> None:
        self.history.clear()
        self.truncation_noted = False
        self.engine.reset_cache()

    def undo(self) -> bool:
        if len(self.history) < 2:
            return False
        del self.history[-2:]
        return True  # the engine's prefix cache notices the shorter prompt by itself

    def save(self, path: str | Path) -> Path:
        p = Path(path).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        data = {"model": self.engine.name, "template": self.engine.template.name, "system": self.system,
                "messages": self.history}
        p.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        return p

    def ask(self, question: str, cancel: threading.Event | None = None) -> Iterator[ReplyEvent]:
        """Answer `question`; the exchange is added to history when the reply is done (also when it
        was stopped with Ctrl-C: what was shown is kept)."""
        budget = self.engine.context_length - self.gen.max_new_tokens
        msgs, dropped, _ = fit_to_context(self.engine.template, self.messages(question), budget)
        self.last_dropped = dropped
        if dropped:
            # history before the kept window is gone for good: later turns stay consistent
            kept = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
            self.history = kept[:-1]
        for ev in reply_stream(self.engine, msgs, self.gen, self.policy, cancel):
            if ev.kind == "done":
                self.history += [{"role": "user", "content": question},
                                 {"role": "assistant", "content": ev.model_text}]
            yield ev
