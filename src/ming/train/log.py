"""The loss log: one JSON object per line in OUTPUT/train_log.jsonl (train and eval rows), mirrored to
TensorBoard (OUTPUT/tensorboard) when the `tensorboard` package is installed. Only numbers are logged,
never sample text."""

from __future__ import annotations

import json
from pathlib import Path


class LossLog:
    def __init__(self, output: str | Path, enabled: bool = True, keep_until_step: int | None = None):
        self.enabled = enabled
        self.path = Path(output) / "train_log.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until_step is None:
            self.path.write_text("")
        elif self.path.is_file():  # resuming: forget what was logged after the checkpoint
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= keep_until_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(output) / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        if self.tb is not None:
            kind = row.get("kind", "train")
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{kind}/{k}", v, row.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read(path: str | Path, kind: str | None = None) -> list[dict]:
    rows = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def peak_rss_mb() -> float:
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024
