"""`--launcher ddp`: two CPU processes (gloo) under `accelerate launch` train on the same global batches as one
process with a twice larger batch, to the same losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ming.train.config import TrainConfig

FIX = Path(__file__).parent / "fixtures" / "train"
COMMON = dict(data=str(FIX / "memorize20.jsonl"), dtype="float32", device="cpu", threads=1, method="lora",
              learning_rate=2e-2, max_steps=6, save_steps=0, system="none", warmup_ratio=0.0)


def _losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def test_two_process_ddp_matches_single_process(tiny_qwen_dir, tmp_path):
    from ming.train.sft import train

    single = tmp_path / "single"
    train(TrainConfig(model_path=str(tiny_qwen_dir), output=str(single), batch_size=4, **COMMON).validate())

    ddp = tmp_path / "ddp"
    flags = []
    for k, v in {**COMMON, "batch_size": 2, "threads": 1}.items():
        flags += [f"--{k.replace('_', '-')}", str(v)]
    cmd = [sys.executable, "-m", "ming.cli.main", "train", "--model-path", str(tiny_qwen_dir), "--output", str(ddp),
           "--launcher", "ddp", "--num-processes", "2", *flags]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 process(es) on cpu" in res.stderr
    summary = json.loads((ddp / "train_summary.json").read_text())
    assert summary["processes"] == 2
    a, b = _losses(single), _losses(ddp)
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert abs(x - y) < 1e-4, (a, b)
    assert a[-1] < a[0]
    assert (ddp / "adapter_model.safetensors").is_file()
