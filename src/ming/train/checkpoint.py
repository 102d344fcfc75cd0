"""Periodic checkpoints that a killed run resumes from exactly.

A checkpoint folder `OUTPUT/checkpoints/step-000120/` holds:
- `trainable.safetensors`: the trained weights (the LoRA adapter, or all weights for full fine-tuning);
- `optimizer.pt`, `scheduler.pt`: their state dicts;
- `rng-<rank>.pt`: Python, NumPy and torch RNG states of every process;
- `state.json` (written last): optimizer step, epoch, micro-batch position in the epoch's plan, seed.
Under DeepSpeed / FSDP the model and optimizer are sharded; `accelerate`'s `save_state` writes them
into `sharded/` instead of the first three files.

Writes are atomic: everything goes into `step-000120.tmp-<pid>/`, which is renamed to its final name
only when complete (a rename within one folder is atomic). A crash mid-save leaves only a `.tmp-` folder,
which `latest()` ignores and the next save removes."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

from ming.errors import MingError

STEP_RE = re.compile(r"^step-(\d+)$")


def folder(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def list_checkpoints(output: str | Path) -> list[Path]:
    d = folder(output)
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.is_dir() and STEP_RE.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))


def latest(output: str | Path) -> Path | None:
    cps = list_checkpoints(output)
    return cps[-1] if cps else None


def find(resume: str, output: str | Path) -> Path:
    if resume == "auto":
        p = latest(output)
        if p is None:
            raise MingError(f"--resume: no complete checkpoint in {folder(output)}; run without --resume to start "
                            "afresh (checkpoints are written every --save-steps steps)")
        return p
    p = Path(resume)
    if not (p / "state.json").is_file():
        raise MingError(f"--resume {resume}: not a complete checkpoint folder (no state.json); "
                        f"complete ones: {[c.name for c in list_checkpoints(output)] or 'none'}")
    return p


def rng_state() -> dict:
    import numpy as np
    import torch

    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import numpy as np
    import torch

    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def trainable_state(model) -> dict:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save(accelerator, model, optimizer, scheduler, state: dict, output: str | Path, sharded: bool,
         keep: int = 2) -> Path | None:
    """Collective: every process calls it. Returns the final folder (on the main process)."""
    import torch
    from safetensors.torch import save_file

    step = int(state["step"])
    final = folder(output) / f"step-{step:06d}"
    # every process must agree on the temporary name: use the main process's pid
    pid = torch.tensor([os.getpid()], dtype=torch.long)
    pid = int(accelerator.gather(pid.to(accelerator.device))[0]) if accelerator.num_processes > 1 else os.getpid()
    tmp = final.with_name(final.name + f".tmp-{pid}")
    if accelerator.is_main_process:
        for stale in folder(output).glob("step-*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    if sharded:
        accelerator.save_state(str(tmp / "sharded"))
    elif accelerator.is_main_process:
        save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return None
    _write_json(tmp / "state.json", {**state, "num_processes": accelerator.num_processes})
    _fsync_dir(tmp)
    if final.exists():  # same step saved before (e.g. resumed run): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    for old in list_checkpoints(output)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load(accelerator, model, optimizer, scheduler, path: Path, sharded: bool) -> dict:
    """Restore a checkpoint into the prepared objects; returns its state.json."""
    import torch
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    if state.get("num_processes", 1) != accelerator.num_processes:
        accelerator.print(f"[ming] note: checkpoint was written by {state.get('num_processes')} processes, resuming "
                          f"on {accelerator.num_processes}; the data order is kept per global batch")
    if sharded:
        accelerator.load_state(str(path / "sharded"))
    else:
        weights = load_file(str(path / "trainable.safetensors"))
        params = dict(accelerator.unwrap_model(model).named_parameters())
        want = {n for n, p in params.items() if p.requires_grad}
        if set(weights) != want:
            missing, extra = sorted(want - set(weights))[:3], sorted(set(weights) - want)[:3]
            raise MingError(f"checkpoint {path} does not match this model/method (missing {missing}, unexpected "
                            f"{extra}); resume with the same --model-path and --method it was written with")
        with torch.no_grad():
            for n, t in weights.items():
                params[n].copy_(t.to(params[n].device, params[n].dtype))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=False))
    rng_file = path / f"rng-{accelerator.process_index}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    return state


def _write_json(p: Path, obj: Any) -> None:
    with open(p, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(d: Path) -> None:
    for f in d.iterdir() if d.is_dir() else []:
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    try:
        fd = os.open(d, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
