"""Records -> tokenized training samples, through the same `Template.render` that `ming chat` uses.

`labels[i] = ids[i]` where the template marks token i as part of an assistant reply, else -100. A sample
longer than `max_len` loses whole early exchanges (user + assistant) until it fits; if even the last
exchange does not fit, the sample is dropped. Every drop is counted by reason; no sample ever leaves
here without a supervised token."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ming.data.records import ErrorLog, iter_records
from ming.errors import MingError, TemplateError
from ming.prompts import MODES, USE_TEMPLATE_DEFAULT

IGNORE = -100


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_targets(self) -> int:
        """Tokens the loss is computed on (position 0 is never a target of a causal LM)."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)


@dataclass
class TokenizeReport:
    records: int = 0
    samples: int = 0
    truncated: int = 0  # samples that lost early exchanges
    exchanges_dropped: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    bad_rows: int = 0  # rows the reader skipped (see read_errors)
    read_errors: dict = field(default_factory=dict)
    tokens: int = 0
    supervised_tokens: int = 0

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict:
        return {"records": self.records, "samples": self.samples, "truncated": self.truncated,
                "exchanges_dropped": self.exchanges_dropped, "dropped": dict(self.dropped),
                "bad_rows": self.bad_rows, "tokens": self.tokens, "supervised_tokens": self.supervised_tokens,
                "read_errors": self.read_errors}

    def summary(self) -> str:
        drops = ", ".join(f"{n} {r}" for r, n in sorted(self.dropped.items())) or "none"
        return (f"{self.records} records -> {self.samples} samples ({self.tokens} tokens, {self.supervised_tokens} "
                f"supervised); truncated (early exchanges dropped): {self.truncated}; dropped: {drops}; "
                f"bad rows skipped by the reader: {self.bad_rows}")


def system_message(system: str | None, template) -> str | None:
    """The system prompt added to records without one (`TrainConfig.system`)."""

    if system is None or system.lower() in ("none", ""):
        return None
    if system in MODES:
        return MODES[system]
    if system == USE_TEMPLATE_DEFAULT:
        return template.default_system
    return system


def with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}] + list(messages)
    return list(messages)


def tokenize(template, messages: list[dict], max_len: int, truncation: str = "turns") -> tuple[Sample | None, str, int]:
    """One conversation -> (sample or None, reason, exchanges dropped). Reasons: 'ok', 'truncated',
    'too_long', 'no_supervised_tokens', 'template_error'."""
    try:
        r = template.render(messages)
    except TemplateError:
        return None, "template_error", 0
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(head):]
    dropped = 0
    while len(r.ids) > max_len:
        if truncation != "turns" or len(turns) <= 2:
            return None, "too_long", dropped
        turns = turns[2:]  # drop the oldest user + assistant exchange
        dropped += 1
        r = template.render(head + turns)
    labels = [t if m else IGNORE for t, m in zip(r.ids, r.mask)]
    sample = Sample(list(r.ids), labels)
    if sample.num_targets == 0:
        return None, "no_supervised_tokens", dropped
    return sample, ("truncated" if dropped else "ok"), dropped


def build_samples(records: Iterable[dict], template, max_len: int, system: str | None = None,
                  truncation: str = "turns", report: TokenizeReport | None = None) -> tuple[list[Sample], TokenizeReport]:
    report = report or TokenizeReport()
    samples: list[Sample] = []
    for rec in records:
        report.records += 1
        msgs = with_system(rec["messages"], system)
        sample, reason, n_dropped = tokenize(template, msgs, max_len, truncation)
        report.exchanges_dropped += n_dropped
        if sample is None:
            report.dropped[reason] += 1
            continue
        report.truncated += reason == "truncated"
        report.samples += 1
        report.tokens += len(sample)
        report.supervised_tokens += sample.num_targets
        samples.append(sample)
    return samples, report


def read_records(files: list[str]) -> tuple[list[dict], "object"]:
    """Read ming JSONL / ShareGPT / Alpaca files with the shared reader; bad rows are counted with file:line."""
    from pathlib import Path

    errors = ErrorLog()
    out: list[dict] = []
    for f in files:
        if not Path(f).is_file():
            raise MingError(f"data file {f} does not exist; pass JSONL files made by `ming data build` (or ShareGPT / "
                            "Alpaca JSON/JSONL)")
        out.extend(iter_records(f, errors=errors, training=True))
    return out, errors


def load(files: list[str], template, max_len: int, system: str | None = None, truncation: str = "turns",
         max_dropped_fraction: float = 1.0, what: str = "training") -> tuple[list[Sample], TokenizeReport]:
    records, errors = read_records(files)
    report = TokenizeReport(bad_rows=errors.n_errors, read_errors=errors.to_dict())
    samples, report = build_samples(records, template, max_len, system, truncation, report)
    total = report.records + report.bad_rows
    if not samples:
        raise MingError(f"no usable {what} samples in {', '.join(files)}: {report.summary()}. "
                        + ("; ".join(errors.examples[:3]) + ". " if errors.examples else "")
                        + f"Raise --max-len (now {max_len}) or check the files with `ming data check`.")
    lost = report.n_dropped + report.bad_rows
    if total and lost / total > max_dropped_fraction:
        raise MingError(f"{lost} of {total} {what} rows were dropped ({report.summary()}), more than "
                        f"--max-dropped-fraction {max_dropped_fraction}. Raise --max-len (now {max_len}) or fix the "
                        "data" + (f" (e.g. {errors.examples[0]})" if errors.examples else "") + ".")
    return samples, report
