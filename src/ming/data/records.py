"""The one record schema shared by `ming data`, `ming train` and `ming eval`, and its readers.

A record is one conversation, one JSON object per line:

    {"id": "...", "source": "...", "category": "knowledge_qa", "subset": "exam_qa",
     "messages": [{"role": "system"|"user"|"assistant", "content": "..."}], "meta": {...}}

`iter_records(path)` streams a file in this format, or ShareGPT (`conversations` with `from`/`value`), or
Alpaca (`instruction`/`input`/`output`) — detected per line — and yields records in this format. Bad lines
(broken JSON, undecodable bytes, missing fields, invalid conversations) are skipped and counted, with
file:line, in an `ErrorLog`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, TypedDict

from ming.data.errorlog import ErrorLog
from ming.data.rawio import iter_rows

CATEGORIES = ("knowledge_qa", "multiturn_diagnosis", "instruction", "safety")
ROLES = ("system", "user", "assistant")

# ShareGPT speaker names -> our roles.
_SHAREGPT_ROLES = {"human": "user", "user": "user", "patient": "user", "gpt": "assistant", "assistant": "assistant",
                   "bot": "assistant", "chatgpt": "assistant", "doctor": "assistant", "model": "assistant",
                   "system": "system"}


class Message(TypedDict):
    role: str
    content: str


class Record(TypedDict):
    id: str
    source: str
    category: str
    subset: str
    messages: list[Message]
    meta: dict[str, Any]


def stable_id(*parts: Any, n: int = 12) -> str:
    """Hex digest of the parts: the same input gives the same id on every machine."""
    try:
        text = "\x1f".join(parts)  # all strings: the common case
    except TypeError:
        text = "\x1f".join(map(str, parts))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()[:n]


def make_record(*, source: str, category: str = "", subset: str = "", messages: list[Message],
                meta: dict | None = None, id: str | None = None, key: Any = None) -> Record:
    """Build a record; the id is `<source>-<hash of key or of the messages>` unless given."""
    if id is None:
        basis = key if key is not None else json.dumps(messages, ensure_ascii=False, sort_keys=True)
        id = f"{source}-{stable_id(source, basis)}"
    return {"id": id, "source": source, "category": category, "subset": subset, "messages": messages,
            "meta": dict(meta or {})}


def detect_format(obj: Any) -> str | None:
    """'ming', 'sharegpt', 'alpaca' or None."""
    if not isinstance(obj, dict):
        return None
    if "messages" in obj:
        return "ming"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    return None


def from_sharegpt(obj: dict) -> dict:
    """ShareGPT (`conversations`: [{from, value}], optional `system`) -> our record (id/source kept when given)."""
    msgs: list[Message] = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        msgs.append({"role": "system", "content": obj["system"]})
    for turn in obj.get("conversations") or []:
        if not isinstance(turn, dict):
            raise ValueError("a conversations item is not an object")
        speaker = str(turn.get("from", turn.get("role", ""))).lower()
        role = _SHAREGPT_ROLES.get(speaker)
        if role is None:
            raise ValueError(f"unknown ShareGPT speaker {speaker!r} (expected human/gpt/system)")
        msgs.append({"role": role, "content": turn.get("value", turn.get("content"))})
    return _wrap(obj, msgs, "sharegpt")


def from_alpaca(obj: dict) -> dict:
    """Alpaca (`instruction`, `input`, `output`, optional `system`/`history`) -> our record."""
    msgs: list[Message] = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        msgs.append({"role": "system", "content": obj["system"]})
    for pair in obj.get("history") or []:  # [[q, a], ...] as in LLaMA-Factory / MING
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction = obj.get("instruction")
    inp = obj.get("input") or ""
    if not isinstance(instruction, str) or not isinstance(inp, str):
        raise ValueError("alpaca 'instruction'/'input' must be strings")
    user = instruction.strip() + ("\n\n" + inp.strip() if inp.strip() else "")
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": obj.get("output")}]
    return _wrap(obj, msgs, "alpaca")


def _wrap(obj: dict, msgs: list[Message], fmt: str) -> dict:
    source = str(obj.get("source") or fmt)
    rec = make_record(source=source, messages=msgs, id=str(obj["id"]) if obj.get("id") else None,
                      category=str(obj.get("category") or ""), subset=str(obj.get("subset") or ""),
                      meta={"format": fmt})
    if rec["category"] and rec["category"] not in CATEGORIES:
        rec["meta"]["original_category"] = rec["category"]
        rec["category"] = ""
    return rec


def to_record(obj: Any) -> dict:
    """Any supported format -> our record. Raises ValueError naming what is missing."""
    fmt = detect_format(obj)
    if fmt == "ming":
        return obj
    if fmt == "sharegpt":
        return from_sharegpt(obj)
    if fmt == "alpaca":
        return from_alpaca(obj)
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"unknown format (keys {keys}); expected 'messages', ShareGPT 'conversations' or "
                     "Alpaca 'instruction'+'output'")


def _plainly_valid(obj: Any, training: bool, require_category: bool) -> bool:
    """A quick test that holds only for records `validate_record` finds nothing wrong with (the common case:
    string id and source, a known category, user/assistant turns alternating after an optional system turn,
    no empty content); a record it does not pass gets the full check."""
    if type(obj) is not dict:
        return False
    i, s, cat, msgs = obj.get("id"), obj.get("source"), obj.get("category"), obj.get("messages")
    if type(i) is not str or not i or type(s) is not str or not s or type(msgs) is not list or not msgs:
        return False
    if (require_category or cat) and cat not in CATEGORIES:
        return False
    if "meta" in obj and type(obj["meta"]) is not dict:
        return False
    roles = []
    for m in msgs:
        if type(m) is not dict or type(m.get("content")) is not str or not m["content"].strip():
            return False
        roles.append(m.get("role"))
    k = 1 if roles[0] == "system" else 0
    n = len(roles) - k
    if n < 1 or (training and n % 2):
        return False
    users, assistants = roles[k::2], roles[k + 1::2]
    return users.count("user") == len(users) and assistants.count("assistant") == len(assistants)


def validate_record(obj: Any, *, training: bool = True, require_category: bool = False) -> list[str]:
    """Problems with one record (empty list = valid). With `training`, the conversation must end with an
    assistant turn. Roles must alternate user/assistant after an optional leading system message."""
    return [] if _plainly_valid(obj, training, require_category) else _problems(obj, training, require_category)


def _problems(obj: Any, training: bool, require_category: bool) -> list[str]:
    problems: list[str] = []
    if not isinstance(obj, dict):
        return [f"record is a {type(obj).__name__}, not an object"]
    for key in ("id", "source"):
        if not isinstance(obj.get(key), str) or not obj.get(key):
            problems.append(f"missing or empty '{key}'")
    cat = obj.get("category")
    if require_category or cat:
        if cat not in CATEGORIES:
            problems.append(f"category {cat!r} is not one of {', '.join(CATEGORIES)}")
    if "meta" in obj and not isinstance(obj["meta"], dict):
        problems.append("'meta' must be an object")
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        problems.append("'messages' must be a non-empty list")
        return problems
    start = 0
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            problems.append(f"messages[{i}] is not an object")
            return problems
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            problems.append(f"messages[{i}].role {role!r} is not one of system/user/assistant")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"messages[{i}] ({role}) has empty or non-string content")
    if problems:
        return problems
    if msgs[0]["role"] == "system":
        start = 1
    body = msgs[start:]
    if not body:
        problems.append("only a system message")
        return problems
    for j, m in enumerate(body):
        want = "user" if j % 2 == 0 else "assistant"
        if m["role"] != want:
            problems.append(f"messages[{j + start}] is {m['role']!r}, expected {want!r} (turns must alternate "
                            "user/assistant after an optional system message)")
            break
    if training and body[-1]["role"] != "assistant":
        problems.append("last message must be from the assistant for training data")
    return problems


def iter_records(path: str | Path, *, errors: ErrorLog | None = None, training: bool = True,
                 encoding: str = "auto") -> Iterator[dict]:
    """Stream records from a JSONL file (ours, ShareGPT or Alpaca, detected per line) or a JSON array file.

    Bad lines are skipped and counted in `errors` with file:line (a fresh ErrorLog is used when None)."""

    errors = errors if errors is not None else ErrorLog()
    for line_no, obj in iter_rows(path, errors=errors, encoding=encoding):
        try:
            rec = to_record(obj)
        except (ValueError, TypeError, KeyError) as exc:
            errors.error(path, line_no, f"conversion failed: {exc}")
            continue
        problems = validate_record(rec, training=training)
        if problems:
            errors.error(path, line_no, "invalid record: " + "; ".join(problems[:3]))
            continue
        yield rec
