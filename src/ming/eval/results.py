"""The per-item results file of a run (DIR/results.jsonl) and the run's settings (DIR/run.json).

Every finished item is appended as one JSON line, flushed and fsync'ed, so a killed run loses at
most the item in flight. On restart the file is read back: a torn last line (the process died
mid-write) is cut off, items already done are skipped, and a line is never written twice for the
same (task, id). A run folder only resumes a task with the same fingerprint (model, task version,
prompt, mode, shots, seed, generation settings); anything else is refused with the difference."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ming.errors import MingError


class ResultsLog:
    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "results.jsonl"
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str], dict] = {}
        self.repaired = 0
        self._load()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:  # a last line without newline: the writer was killed mid-line
                break
            line = data[pos:nl]
            pos = nl + 1
            if not line.strip():
                good_end = pos
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                lineno = data[:nl].count(b"\n") + 1
                raise MingError(f"{self.path}: line {lineno} is not JSON ({exc.msg}) and is not "
                                "the last line, so this is not a torn write; move the file away or use another "
                                "--output") from exc
            self.rows.setdefault((row.get("task"), str(row.get("id"))), row)
            good_end = pos
        if good_end < len(data):
            self.repaired = len(data) - good_end
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def done(self, task: str, item_id: str) -> bool:
        return (task, item_id) in self.rows

    def append(self, row: dict) -> bool:
        """Write one finished item; False (and nothing written) if it is already there."""
        key = (row["task"], str(row["id"]))
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self.lock:
            if key in self.rows:
                return False
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.rows[key] = row
        return True

    def task_rows(self, task: str, ids: list[str]) -> list[dict]:
        return [self.rows[(task, i)] for i in ids if (task, i) in self.rows]

    def drop_task(self, task: str) -> int:
        """Forget (and remove from the file) every result of `task` (for --overwrite)."""
        with self.lock:
            keep = {k: v for k, v in self.rows.items() if k[0] != task}
            n = len(self.rows) - len(keep)
            if n:
                self._fh.close()
                tmp = self.path.with_suffix(".jsonl.tmp")
                with open(tmp, "w", encoding="utf-8") as f:
                    for row in keep.values():
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                os.replace(tmp, self.path)
                self._fh = open(self.path, "a", encoding="utf-8")
                self.rows = keep
        return n

    def close(self) -> None:
        self._fh.close()


def check_fingerprints(run_json: Path, fingerprints: dict[str, dict], overwrite: bool = False) -> dict:
    """Merge this invocation's task fingerprints into run.json, refusing a task whose earlier
    results were made with different settings. Returns the stored run.json content."""
    stored = {}
    if run_json.exists():
        stored = json.loads(run_json.read_text(encoding="utf-8"))
    old = stored.get("tasks", {})
    for name, fp in fingerprints.items():
        if name in old and old[name] != fp and not overwrite:
            diff = {k: (old[name].get(k), fp.get(k)) for k in sorted(set(old[name]) | set(fp))
                    if old[name].get(k) != fp.get(k)}
            raise MingError(f"{run_json.parent} already holds {name} results made with other settings "
                            f"(before, now): {diff}. Use another --output, or --overwrite to discard them.")
    return stored
