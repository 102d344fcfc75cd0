"""`--launcher ddp|zero2|zero3|fsdp`: relaunch this training run under `accelerate launch` with a packaged config.

The resolved configuration is written to OUTPUT/launch_config.yaml and every process runs
`python -m ming.cli.main train --config OUTPUT/launch_config.yaml --launcher none`, so all processes train
exactly what the user asked for. Number of processes / machines, the machine rank and the rendezvous
address are passed through, so the same command scales from 2 CPU processes (gloo) to 8 GPUs or several
nodes (run it on every node with its own --machine-rank)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

from ming import models
from ming.errors import MingError
from ming.train import config as train_config
from ming.train.model import mixed_precision


def config_file(launcher: str) -> Path:
    p = resources.files("ming.train") / "accelerate_configs" / f"{launcher}.yaml"
    return Path(str(p))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_processes(device: str) -> int:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 2


def command(cfg, config_path: Path, device: str) -> list[str]:
    n = cfg.num_processes or default_processes(device) * max(1, cfg.num_machines)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file(cfg.launcher)),
           "--num_processes", str(n), "--num_machines", str(cfg.num_machines), "--machine_rank", str(cfg.machine_rank),
           "--mixed_precision", mixed_precision(cfg.dtype, device)]
    if cfg.num_machines > 1:
        if not cfg.main_process_ip:
            raise MingError("--num-machines > 1 needs --main-process-ip (the address of machine 0) and the same "
                            "command on every machine with its own --machine-rank")
        cmd += ["--main_process_ip", cfg.main_process_ip, "--main_process_port", str(cfg.main_process_port or 29500)]
    else:
        cmd += ["--main_process_port", str(cfg.main_process_port or _free_port())]
    if device == "cpu":
        cmd += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 2) // max(1, n)))]
    cmd += ["-m", "ming.cli.main", "train", "--config", str(config_path), "--launcher", "none"]
    return cmd


def check(cfg, device: str) -> None:
    if cfg.launcher in ("zero2", "zero3"):
        try:
            import deepspeed  # noqa: F401
        except ImportError as exc:
            raise MingError(f"--launcher {cfg.launcher} needs DeepSpeed: pip install deepspeed (on a CUDA machine). "
                            "On CPU use --launcher ddp.") from exc
        if device == "cpu":
            raise MingError(f"--launcher {cfg.launcher} (DeepSpeed ZeRO) needs CUDA GPUs; on CPU use --launcher ddp")


def relaunch(cfg) -> int:
    device = models.pick_device(cfg.device)
    check(cfg, device)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    child = dataclasses.replace(cfg, launcher="none")
    path = out / "launch_config.yaml"
    path.write_text(train_config.to_yaml(child), encoding="utf-8")
    cmd = command(cfg, path, device)
    print("[ming] launching: " + " ".join(cmd), file=sys.stderr)
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return subprocess.call(cmd, env=env)
