"""CPU thread policy for generation and training.

Default: all cores, and OMP_WAIT_POLICY=PASSIVE so that spinning threads do not collapse throughput
when another process holds a core (see bench/engine.py). `--threads N` / MING_THREADS override."""

from __future__ import annotations

import os


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def resolve(threads: int | None) -> int:
    from ming import envs

    return threads or envs.threads() or default_threads()


def configure(threads: int | None = None) -> int:
    n = resolve(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return n
