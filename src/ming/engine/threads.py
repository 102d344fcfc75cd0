"""CPU thread policy for generation and training.

Default: every core this process may run on; the llama.cpp backend also leaves out the cores other processes
are busy on, checked per reply and every few dozen tokens (`free_cores`), because two threads that meet at a
barrier after every operation wait for whichever one was descheduled. And OpenMP's wait policy PASSIVE. By default OpenMP
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


# -------------------------------------------------------------------------------------------------
# Adaptive thread count: on a shared machine, use only the cores nobody else is running on
# -------------------------------------------------------------------------------------------------
def _own_running() -> int:
    """Threads of this process that are running or runnable (state R), e.g. OpenMP workers still spinning."""
    n = 0
    try:
        for task in os.scandir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task.name}/stat", encoding="ascii", errors="replace") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "R":
                        n += 1
            except (OSError, IndexError):
                continue
    except OSError:
        return 1
    return max(1, n)


def runnable_others(samples: int = 3, gap_s: float = 0.0005) -> int | None:
    """How many threads of other processes are runnable right now (Linux /proc/stat procs_running minus
    this process's running threads), the median of a few samples a millisecond apart; None where /proc is
    not available."""
    import statistics
    import time

    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith("procs_running"))
        except (OSError, ValueError, StopIteration):
            return None
        seen.append(max(0, running - _own_running()))
        if i + 1 < samples:
            time.sleep(gap_s)
    return int(statistics.median(seen))


def free_cores(max_threads: int) -> int:
    """Threads to use now: `max_threads`, less the cores other runnable work is holding (at least 1).
    When another process holds a core, two threads that meet at a barrier every operation wait for the
    descheduled one (decode collapses to a fraction of the one-thread speed); one thread does not."""
    others = runnable_others()
    if others is None:
        return max_threads
    return max(1, min(max_threads, default_threads() - others))
