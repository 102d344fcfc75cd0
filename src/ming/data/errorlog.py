"""`ErrorLog`: bad input rows counted and reported with file:line, never dropped silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ErrorLog:
    """Counts bad input by reason and keeps the first few `file:line: reason` lines (no row text: rows may hold
    patient data). `warnings` are problems that were repaired (e.g. a GB18030 line decoded), not skipped."""

    max_examples: int = 20
    errors: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    warning_examples: list[str] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)  # rows read per file

    def error(self, path: str | Path, line: int, reason: str) -> None:
        self.errors[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{path}:{line}: {reason}")

    def warn(self, path: str | Path, line: int, reason: str) -> None:
        self.warnings[reason] += 1
        if len(self.warning_examples) < self.max_examples:
            self.warning_examples.append(f"{path}:{line}: {reason}")

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict:
        return {"errors": dict(self.errors), "warnings": dict(self.warnings), "examples": list(self.examples),
                "warning_examples": list(self.warning_examples)}

    def merge(self, other: "ErrorLog") -> None:
        self.errors.update(other.errors)
        self.warnings.update(other.warnings)
        self.rows.update(other.rows)
        room = self.max_examples - len(self.examples)
        self.examples.extend(other.examples[:max(room, 0)])
        room = self.max_examples - len(self.warning_examples)
        self.warning_examples.extend(other.warning_examples[:max(room, 0)])
