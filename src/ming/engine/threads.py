"""CPU thread policy for generation and training.

Default: every core this process may run on, with OpenMP's wait policy PASSIVE. By default OpenMP
threads spin while they wait for each other; when another process holds one of the cores, the
spinning thread steals the time slice its partner needs and two-thread decoding collapses (measured
on a 2-core machine: llama.cpp 31 -> 2 tok/s, transformers 11 -> 0.7 tok/s). PASSIVE threads sleep
instead: free on a quiet machine, and under load close to the one-thread speed (bench/engine.py
measures both). `--threads N` / MING_THREADS override the count.

libgomp reads OMP_WAIT_POLICY once, when it is loaded (by `import torch` or by llama.cpp), so
`set_wait_policy()` must run before either: `ming`'s main() calls it first thing."""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"


def set_wait_policy() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user chose a policy. Returns False when an OpenMP
    runtime is already loaded in this process (the setting then only reaches child processes)."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return not openmp_loaded()


def openmp_loaded() -> bool:
    """Whether libgomp / libiomp is already mapped into this process (Linux; False elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        return False
    return "libgomp" in maps or "libiomp" in maps or "libomp.so" in maps


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def resolve(threads: int | None) -> int:
    from ming import envs
    from ming.errors import MingError

    n = threads or envs.threads() or default_threads()
    if n < 1:
        raise MingError(f"--threads must be >= 1, got {n}")
    return n


def configure(threads: int | None = None) -> int:
    n = resolve(threads)
    set_wait_policy()
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    return n
