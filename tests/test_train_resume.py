"""Checkpoints: a run killed with SIGKILL and restarted with --resume ends at the same loss as an uninterrupted
run; a half-written checkpoint is never picked up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ming.train import checkpoint
from ming.train.config import TrainConfig

FIX = Path(__file__).parent / "fixtures" / "train"
ARGS = dict(data=str(FIX / "memorize20.jsonl"), dtype="float32", device="cpu", threads=1, method="lora",
            lora_dropout=0.1, learning_rate=2e-2, batch_size=3, grad_accum=2, max_steps=16, save_steps=4,
            warmup_ratio=0.1, system="none", save_total_limit=3)


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def _flags(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_qwen_dir, tmp_path):
    from ming.train.sft import train

    full = train(TrainConfig(model_path=str(tiny_qwen_dir), output=str(tmp_path / "a"), **ARGS).validate())

    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "ming.cli.main", "train", "--model-path", str(tiny_qwen_dir), "--output", str(out),
           *_flags(ARGS)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints" / "step-000004").is_dir():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    assert rc == -signal.SIGKILL, f"the run ended before it could be killed (rc {rc}): {proc.stderr.read()[-2000:]}"
    done = checkpoint.list_checkpoints(out)
    assert done, "no checkpoint was written before the kill"
    killed_at = int(json.loads((done[-1] / "state.json").read_text())["step"])
    assert 4 <= killed_at < 16
    assert not (out / "adapter_model.safetensors").exists()

    resumed = train(TrainConfig(model_path=str(tiny_qwen_dir), output=str(out), resume="auto", **ARGS).validate())
    assert resumed["steps_run"] == 16 - killed_at
    assert abs(resumed["final_loss"] - full["final_loss"]) < 1e-5, (resumed["final_loss"], full["final_loss"])
    a, b = _losses(tmp_path / "a"), _losses(out)
    assert sorted(b) == list(range(1, 17))
    for step in range(1, 17):
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])


def test_half_written_checkpoints_are_ignored(tmp_path):
    cps = tmp_path / "checkpoints"
    good = cps / "step-000004"
    good.mkdir(parents=True)
    (good / "state.json").write_text(json.dumps({"step": 4}))
    (cps / "step-000008.tmp-1234").mkdir()  # crash mid-save: never renamed
    (cps / "step-000008.tmp-1234" / "state.json").write_text("{}")
    (cps / "step-000012").mkdir()  # no state.json: not complete
    assert checkpoint.latest(tmp_path) == good
    assert checkpoint.find("auto", tmp_path) == good
    from ming.errors import MingError
    import pytest

    with pytest.raises(MingError, match="not a complete checkpoint"):
        checkpoint.find(str(cps / "step-000012"), tmp_path)
