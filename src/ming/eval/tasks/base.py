"""What a benchmark is: a named, versioned task over a JSONL file in the shared data folder, the
kind of scoring it gets (mcq / qa / safety / consult), and the validated rows it reads.

A bad row is never dropped silently: it is reported with file and line, counted in the report,
and a file with more than 5 % bad rows is refused."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ming.errors import MingError

KINDS = ("mcq", "qa", "safety", "consult")
MAX_BAD_FRACTION = 0.05


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # mcq | qa | safety | consult
    version: str  # bump when the data selection, prompt or scoring changes
    dataset: str | None  # folder under the data dir (None: the file comes from --data)
    file: str = "dev.jsonl"  # file in that folder that is scored
    shots_file: str | None = "dev.jsonl"  # where few-shot examples come from (never the scored items)
    language: str = "zh"
    description: str = ""
    group_keys: tuple[str, ...] = ("subject", "department")  # per-group accuracy
    # consult tasks: row -> ming.eval.simpatient.Case (None = the row is not usable as a case)
    to_case: Callable | None = field(default=None, compare=False)
    keep: Callable | None = field(default=None, compare=False)  # extra row filter, e.g. "has a diagnosis"

    def data_path(self, data_dir: Path | None, data: str | None = None) -> Path:
        if data:
            p = Path(data).expanduser()
            if not p.is_file():
                raise MingError(f"--data {data}: no such file. Give a JSONL file in the shared "
                                f"{self.kind.upper()} schema (see /work/shared/data/README.md).")
            return p
        if self.dataset is None:
            raise MingError(f"task {self.name} needs --data FILE (a JSONL file in the shared MCQ schema)")
        if data_dir is None:
            raise MingError(f"task {self.name} reads {self.dataset}/{self.file} from the data folder, but none was "
                            "found. Set MING_DATA_DIR=/path/to/shared/data or pass --data FILE.")
        p = data_dir / self.dataset / self.file
        if not p.is_file():
            raise MingError(f"task {self.name}: {p} does not exist; the data folder {data_dir} has "
                            f"{sorted(x.name for x in data_dir.iterdir())[:20]}")
        return p

    def shots_path(self, data_dir: Path | None, data_path: Path) -> Path | None:
        if self.shots_file is None or self.dataset is None or data_dir is None:
            return data_path  # shots come from the scored file itself, minus the scored items
        p = data_dir / self.dataset / self.shots_file
        return p if p.is_file() else data_path


@dataclass
class Problem:
    path: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.why}"


def _check_mcq(row: dict) -> str | None:
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        return "no 'question' text"
    opts = row.get("options")
    if not isinstance(opts, dict) or len(opts) < 2:
        return "'options' must be an object of at least 2 letter -> text"
    if any(not (isinstance(k, str) and len(k) == 1 and k.isupper() and k.isalpha()) for k in opts):
        return f"option keys must be single capital letters, got {sorted(opts)}"
    ans = row.get("answer")
    if not isinstance(ans, str) or not ans or any(ch not in opts for ch in ans):
        return f"'answer' must be letters among the options {''.join(sorted(opts))}, got {ans!r}"
    return None


def _check_qa(row: dict) -> str | None:
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        return "no 'question' text"
    if not isinstance(row.get("answer"), str) or not row["answer"].strip():
        return "no reference 'answer' text"
    return None


def _check_safety(row: dict) -> str | None:
    if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
        return "no 'prompt' text"
    return None


def _check_consult(row: dict) -> str | None:
    if isinstance(row.get("turns"), list) and row["turns"]:
        return None
    if isinstance(row.get("case"), str) and row["case"].strip():
        return None
    return "a consultation case needs 'turns' (dialogue schema) or 'case' (clinical case schema)"


CHECKS = {"mcq": _check_mcq, "qa": _check_qa, "safety": _check_safety, "consult": _check_consult}


def read_rows(path: Path, kind: str) -> tuple[list[dict], list[Problem]]:
    """Read and validate a JSONL file. Returns (good rows, problems); each row gets `_line`."""
    check = CHECKS[kind]
    rows, problems, seen = [], [], set()
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(Problem(str(path), no, f"not JSON ({exc.msg})"))
                continue
            if not isinstance(row, dict):
                problems.append(Problem(str(path), no, "not a JSON object"))
                continue
            why = check(row)
            if why is None and not isinstance(row.get("id"), (str, int)):
                row["id"] = f"line{no}"  # files without ids still run; ids are then line numbers
            if why is None and str(row["id"]) in seen:
                why = f"duplicate id {row['id']!r}"
            if why:
                problems.append(Problem(str(path), no, why))
                continue
            row["id"] = str(row["id"])
            row["_line"] = no
            seen.add(row["id"])
            rows.append(row)
    total = len(rows) + len(problems)
    if total == 0:
        raise MingError(f"{path} has no rows")
    if len(problems) > MAX_BAD_FRACTION * total:
        shown = "\n  ".join(str(p) for p in problems[:10])
        raise MingError(f"{path}: {len(problems)} of {total} rows are bad (more than {MAX_BAD_FRACTION:.0%}); "
                        f"fix the file. First problems:\n  {shown}")
    return rows, problems
