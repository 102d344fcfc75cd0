"""`ming env`: versions, devices and settings to paste into a bug report."""

from __future__ import annotations

import argparse

from ming import __version__, envs
from ming.models import embedded
from ming.engine import select, threads


def add_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def collect() -> dict:
    import importlib.metadata as md
    import os
    import platform
    import sys

    info: dict = {"ming": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                  "cpu_count": os.cpu_count(), "usable_cores": threads.default_threads()}
    for pkg in ("torch", "transformers", "tokenizers", "peft", "accelerate", "llama-cpp-python", "vllm", "deepspeed",
                "bitsandbytes", "gguf", "fastapi", "uvicorn", "datasketch", "openai"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        info["torch_threads"] = torch.get_num_threads()
        try:
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except AttributeError:
            pass
    except ImportError:
        pass
    info["llamacpp_backend"] = select.llamacpp_available()
    for m in embedded.MODELS.values():
        have = sum(1 for p in embedded.parts(m) if p.path)
        info[f"embedded_model_{m.key}"] = {"gguf": str(embedded.gguf_path(m)), "verified": embedded.is_ready(m),
                                           "parts_installed": f"{have}/{m.n_parts}"}
    info["env"] = {k: os.environ.get(k, f"(default: {d})") for k, (d, _) in envs.ENV_VARS.items()}
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES"):
        if k in os.environ:
            info["env"][k] = os.environ[k]
    info["data_dir"] = str(envs.data_dir())
    return info


def run(args: argparse.Namespace) -> int:
    import json

    info = collect()
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    for k, v in info.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for k2, v2 in v.items():
                print(f"  {k2}: {v2}")
        else:
            print(f"{k}: {v}")
    return 0
