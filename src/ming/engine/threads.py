"""CPU thread policy for generation and training.

Generation (chat, serve, eval): every core this process may run on, less the cores other processes are busy
on (`AdaptiveThreads`). Two decoding threads meet at a barrier after every operation; OpenMP's default wait
policy lets the first one there spin briefly for the other, which is what makes two threads fast on a quiet
machine (llama.cpp here: ~21 tok/s spinning vs ~14.5 with OMP_WAIT_POLICY=PASSIVE, where waiting threads sleep
and are woken through the kernel at every barrier). When another process holds one of the cores, the partner
thread is descheduled and the spinning one burns the time slice it needs: decoding collapses (measured on a
2-core machine: llama.cpp 21 -> 1.7-4.5 tok/s; PERF-NOTES: 31 -> 2, transformers 11 -> 0.7). So the thread
count follows the free cores: checked at the start of every reply, every `ADAPT_EVERY` tokens and at once when
a token takes several times longer than the fastest recent one. With one core busy that is one thread: no
barriers, the quiet one-thread speed (bench/engine.py measures all of these side by side). `--threads N` /
MING_THREADS fix the count.

Training: long matrix products with few barriers; `ming train` sets OMP_WAIT_POLICY=PASSIVE (free there,
and a rescue when the machine is shared). libgomp reads OMP_WAIT_POLICY once, when it is loaded (by
`import torch` or by llama.cpp), so `set_wait_policy()` must run before either: `ming`'s main() calls it
first thing for `ming train`, and the training launcher puts it in its workers' environment."""

from __future__ import annotations

import os
import statistics
import time

from ming import envs
from ming.errors import MingError

WAIT_POLICY = "PASSIVE"  # for training; generation keeps OpenMP's default (spin, then sleep)
ADAPT_EVERY = 32  # tokens between two checks of the free cores
CONFIRM_S = 0.004  # a drop in free cores is confirmed by a second look this much later
SLOW_FACTOR = 3.0  # a token this many times slower than the fastest recent one triggers a check at once


def set_wait_policy(policy: str = WAIT_POLICY) -> bool:
    """Set OMP_WAIT_POLICY (PASSIVE: for training) unless the user chose a policy. Returns False when an
    OpenMP runtime is already loaded in this process (the setting then only reaches child processes)."""
    os.environ.setdefault("OMP_WAIT_POLICY", policy)
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
    n = threads or envs.threads() or default_threads()
    if n < 1:
        raise MingError(f"--threads must be >= 1, got {n}")
    return n


def adaptive(threads: int | None) -> bool:
    """Whether generation follows the free cores: yes unless a count was fixed (--threads or MING_THREADS)."""

    return threads is None and envs.threads() is None


def configure(threads: int | None = None, wait_policy: str | None = None) -> int:
    """Resolve the thread count and give it to torch; `wait_policy` (training: PASSIVE) is set first."""
    n = resolve(threads)
    if wait_policy:
        set_wait_policy(wait_policy)
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


class AdaptiveThreads:
    """Keeps a decoder on the free cores. `apply(n)` changes the decoder's thread count (llama.cpp:
    llama_set_n_threads; torch: set_num_threads); `start()` at the start of a reply, `step()` after each token.

    A check reads /proc (~2 ms) and happens at `start()`, every `every` tokens (a quarter of that while running
    on fewer threads than the maximum), and whenever a token took `slow_factor` times longer than the fastest
    since the last change (a core was just taken: with two spinning threads the next tokens would take ~100x
    longer, so one slow token is enough to react). A batching engine's step decodes several tokens at once
    (`step(tokens)`): a step is compared only with earlier steps of as many tokens, so a step that also reads a
    new prompt is not mistaken for a stolen core (it was: 27 checks per 64 steps at 8 clients, and a needless
    drop to one thread, 10-20% of the batch's throughput; docs/serve.md)."""

    def __init__(self, max_threads: int, apply, enabled: bool = True, every: int = ADAPT_EVERY,
                 slow_factor: float = SLOW_FACTOR, min_slow_s: float = 0.02, clock=None, free=None):
        self._clock = clock or time.perf_counter  # tests pass their own clock and core count
        self._free = free or free_cores
        self.max_threads = max_threads
        self.enabled = enabled and max_threads > 1
        self.now = max_threads
        self.apply = apply
        self.every, self.slow_factor, self.min_slow_s = every, slow_factor, min_slow_s
        self.checks = 0
        self._since, self._t = 0, None  # steps since the last check
        self._best: dict[int, float] = {}  # the fastest step per number of tokens in it, since the last change

    def check(self) -> int:
        if self.enabled:
            self.checks += 1
            self._since = 0
            n = self._free(self.max_threads)
            if n < self.now:  # confirm a few ms later: a short burst elsewhere should not cost 32 slow tokens
                time.sleep(CONFIRM_S)
                n = max(n, self._free(self.max_threads))
            if n != self.now:
                self.now = n
                self.apply(n)
                self._best = {}  # the per-token time changes with the thread count
        return self.now

    def start(self) -> int:
        """A new reply: check the free cores now; token timing restarts with the next `step()`."""
        n = self.check()
        self._since, self._t = 0, None
        return n

    def step(self, tokens: int = 1) -> None:
        """One more decode step done: one token, or `tokens` at once (a batch: its sequences' next tokens and
        any prompt chunk read with them)."""
        if not self.enabled:
            return
        t = self._clock()
        if self._t is None:  # the first token of a reply (its time includes the prompt)
            self._t = t
            return
        dt, self._t = t - self._t, t
        self._since += 1
        best = self._best.get(tokens)
        slow = best is not None and dt > max(self.slow_factor * best, self.min_slow_s)
        if best is None or dt < best:
            if len(self._best) >= 64 and best is None:  # prompt chunks of many sizes: keep the table small
                self._best.clear()
            self._best[tokens] = dt
        # below the maximum, look again sooner: the core may be free again (a process that was exiting)
        every = self.every if self.now >= self.max_threads else max(1, self.every // 4)
        if slow or self._since >= every:
            self.check()
            self._t = self._clock()  # the check's own time is not a token's
