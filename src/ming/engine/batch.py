"""Continuous batching: many sequences share one model context, and every step advances all of them with
one forward pass.

Decode of a small model on a CPU is bound by reading the weights once per forward pass; a pass that carries
the next token of eight sequences reads them once, not eight times. `BatchRunner` is the scheduler that
makes this happen for a backend that can decode a mixed batch (llama.cpp: `llama_batch` entries with their
own sequence id and position, one unified KV cache):

- a request (`stream`) waits in a FIFO until a **slot** (a sequence id) is free and the KV cache has room
  for its prompt and its answer; then it joins at the next step. Cells are either one stream per slot (each
  slot holds a full context window; the default, see "exactness" below) or one pool shared by all slots
  (`shared_cells`: less memory, admission by free cells);
- each step carries one token for every sequence that is decoding, plus at most `prefill_chunk` prompt
  tokens of sequences that are still reading their prompt (all of `n_batch` when nothing is decoding), so
  a long new prompt delays the running streams by one chunk per step, not by its whole length;
- every sequence samples with its own settings and random stream (`SeqState`, shared with the
  one-sequence loop in loop.py, so a token is chosen by the same code either way); the runner sends token
  ids and each caller's thread turns them into text (`stream`), so detokenizing costs the step nothing;
- a finished, cancelled or abandoned sequence leaves at the next step and its slot is free; its tokens stay
  in the cache, so the client's next turn (whose prompt starts with them) reuses them, and a prompt that
  shares a prefix with any cached sequence (the system prompt) copies those cells instead of recomputing
  them; cached tokens of idle slots are dropped, least recently used first, when room is needed.

Exactness: with one stream per slot a sequence's cells are in position order and attended to only by it, so
(with batch-invariant matmul kernels, see llamacpp.py) a request gets bit-identical logits whatever runs
beside it. In a shared pool, cells freed by one sequence are refilled by others, the attention sum then runs
in cell order instead of position order, and logits can differ in the last bits (a greedy pick can flip at a
near-tie).

One thread (the runner) owns the steps. The backend supplies `decode(entries)`, `logits(i)`,
`seq_rm(seq, p0)`, `seq_cp(src, dst, n)` and `ctx_lock`, which the runner holds from a decode until it has read
its logits, and which the backend's one-sequence calls (scoring) take too."""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ming.engine.base import Chunk
from ming.engine.loop import SeqState
from ming.errors import MingError

_END = object()


@dataclass
class Slot:
    """One sequence id of the context and the tokens it holds in the KV cache, in position order."""

    seq_id: int
    ids: list[int] = field(default_factory=list)
    active: "Active | None" = None
    used: float = 0.0  # when it last served a request (LRU for dropping cached tokens)


@dataclass
class Active:
    """A request in the runner: waiting for a slot, reading its prompt, or decoding."""

    seq: SeqState  # the runner's copy: prompt, settings, random stream, sampled ids (no decoder)
    cancel: Any  # an object with is_set(), or None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    slot: Slot | None = None
    todo: list[int] = field(default_factory=list)  # prompt tokens still to feed
    abandoned: bool = False  # the consumer stopped reading
    done: bool = False
    enqueued: float = field(default_factory=time.monotonic)

    def cancelled(self) -> bool:
        return self.abandoned or (self.cancel is not None and self.cancel.is_set())

    def room_left(self) -> int:
        """KV cells this request may still claim: its unread prompt and the rest of its answer."""
        return len(self.todo) + max(0, self.seq.max_new - len(self.seq.generated))


class BatchRunner:
    def __init__(self, backend: Any, *, max_batch: int, kv_cells: int, n_batch: int, prefill_chunk: int,
                 stop_ids, prefix_cache: bool = True, first_seq_id: int = 1, shared_cells: bool = False,
                 other_cells: Callable[[], int] = lambda: 0, on_start: Callable[[], Any] = lambda: None,
                 on_step: Callable[[int], Any] = lambda tokens: None):
        if max_batch < 1 or prefill_chunk < 1:
            raise MingError(f"max_batch and prefill_chunk must be >= 1, got {max_batch} and {prefill_chunk}")
        self.backend = backend
        self.max_batch = max_batch
        self.kv_cells = kv_cells  # the shared pool's size; with a stream per slot, each slot's own window
        self.shared_cells = shared_cells
        self.n_batch = n_batch
        self.prefill_chunk = min(prefill_chunk, n_batch)
        self.stop_ids = stop_ids
        self.prefix_cache = prefix_cache
        self.slots = [Slot(first_seq_id + i) for i in range(max_batch)]
        self._other_cells = other_cells  # cells held outside the runner (the backend's one-sequence calls)
        self._on_start, self._on_step = on_start, on_step
        self._pending: collections.deque[Active] = collections.deque()
        self._cv = threading.Condition()
        self._closing = False
        self.steps = 0
        self.stats = collections.Counter()  # tokens decoded / prefilled / reused, for benches and /health
        self._thread = threading.Thread(target=self._run, name="ming-batch-runner", daemon=True)
        self._thread.start()

    # -- the consumer side (any thread) ------------------------------------------------------------------
    def stream(self, seq: SeqState, cancel=None) -> Iterator[Chunk]:
        """The chunks of one reply, as the one-sequence loop (loop.py) would yield them.

        The runner only samples: it sends token ids. This side turns them into text with the reply's own
        decoder, in the caller's thread, and applies the loop's rules in the loop's order: the cancel flag is
        read before each token is taken, then the token is accepted (stop token, stop string, length). So a
        caller that cancels in answer to a chunk (an `until` that has its answer) gets exactly the tokens it
        would get from the loop, although the runner may already have sampled the next one."""
        a = Active(seq.fork_for_runner(), cancel)
        with self._cv:
            if self._closing:
                raise MingError("the engine is closed")
            self._pending.append(a)
            self._cv.notify()
        try:
            while True:
                item = a.out.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _END:  # the runner stopped it (its cancel flag, or a stop string it could not see)
                    seq.finish = seq.finish or "cancelled"
                    break
                if cancel is not None and cancel.is_set():
                    seq.finish = "cancelled"
                    break
                text = seq.accept(item, self.stop_ids)
                if text:
                    yield Chunk(text=text)
                if seq.finish:
                    break
            seq.n_cached = a.seq.n_cached
            yield seq.last_chunk()
        finally:
            if not a.done:
                a.abandoned = True  # the runner drops it at the next step
                with self._cv:
                    self._cv.notify()

    def busy(self) -> dict:
        with self._cv:
            return {"running": sum(s.active is not None for s in self.slots), "waiting": len(self._pending),
                    "cached_tokens": sum(len(s.ids) for s in self.slots), "kv_cells": self.kv_cells,
                    "steps": self.steps, **self.stats}

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)

    # -- the runner ---------------------------------------------------------------------------------------
    def _actives(self) -> list[Active]:
        return [s.active for s in self.slots if s.active is not None]

    def _run(self) -> None:
        idle = True
        while True:
            with self._cv:
                while not self._pending and not self._actives() and not self._closing:
                    self._cv.wait()
                    idle = True
                if self._closing:
                    break
            if idle:
                self._on_start()  # the thread governor looks at the free cores
                idle = False
            try:
                self._step()
            except BaseException as exc:  # noqa: BLE001 - handed to every request in flight, the runner lives on
                err = exc if isinstance(exc, MingError) else MingError(f"batched decode failed: {exc!r}")
                for a in self._actives():
                    self._finish(a, error=err)
                for s in self.slots:  # their cache may be half written
                    try:
                        self._drop(s)
                    except Exception:  # noqa: BLE001 - the bookkeeping is reset either way
                        s.ids = []
        for a in list(self._pending) + self._actives():
            self._finish(a, error=MingError("the engine was closed while this request was running"))

    def _step(self) -> None:
        for a in self._actives():
            if a.cancelled():
                a.seq.finish = "cancelled"
                self._finish(a)
        self._admit()
        entries, readers = self._plan()
        if not entries:
            return
        with self.backend.ctx_lock:  # the logits stay valid until the backend's next decode (a scoring call)
            rc = self.backend.decode(entries)
            if rc == 1:  # no room in the KV cache for the batch: drop idle caches and try once more
                for s in self._idle_slots():
                    self._drop(s)
                rc = self.backend.decode(entries)
            if rc != 0:
                raise MingError(f"llama.cpp could not decode a batch of {len(entries)} tokens ({rc}); lower "
                                f"--max-batch or raise --kv-cells")
            self.steps += 1
            for (tok, _pos, _sid, _want), slot in zip(entries, readers):
                slot.ids.append(tok)
            for j, ((_tok, _pos, _sid, want), slot) in enumerate(zip(entries, readers)):
                a = slot.active
                if not want or a is None:
                    continue
                seq = a.seq
                seq.n_past = len(slot.ids)
                token = seq.next_token(self.backend.logits(j))  # by index in the batch
                a.out.put(token)
                if seq.take(token, self.stop_ids):
                    self._finish(a)
        self._on_step(len(entries))  # the thread governor compares steps of as many tokens

    # -- admission ----------------------------------------------------------------------------------------
    def _free_cells(self) -> int:
        """Of the shared pool: an upper bound on what is in use (a cell shared by several sequences is counted
        for each)."""
        held = sum(len(s.ids) for s in self.slots) + self._other_cells()
        return self.kv_cells - held - sum(a.room_left() for a in self._actives())

    def _idle_slots(self) -> list[Slot]:
        return sorted((s for s in self.slots if s.active is None and s.ids), key=lambda s: s.used)

    def _admit(self) -> None:
        while True:
            with self._cv:
                while self._pending and self._pending[0].cancelled():
                    a = self._pending.popleft()
                    a.seq.finish = "cancelled"
                    self._finish(a)
                if not self._pending:
                    return
                a = self._pending[0]
            free = [s for s in self.slots if s.active is None]
            if not free:
                return
            prompt = a.seq.prompt
            donor, n = self._longest_prefix(prompt)
            # a free slot whose cache starts the prompt is reused in place; otherwise an empty slot, else the
            # least recently used one, takes the request (copying the prefix cells of a busy donor)
            own = donor if donor is not None and donor.active is None else \
                min(free, key=lambda s: (len(s.ids) > 0, s.used))
            need = len(prompt) + a.seq.max_new  # cells it may hold once answered (shared prefix counted)
            if not self._make_room(need, own, donor):
                if donor is not None and donor is not own and not self._actives():
                    self._drop(donor)  # nothing else will free cells: give up the shared prefix
                    donor, n = None, 0
                if not self._make_room(need, own, donor):
                    if not self._actives():
                        err = MingError(f"a request of {len(prompt)} prompt tokens and up to {a.seq.max_new} answer "
                                        f"tokens needs {need} KV cells, more than the {self.kv_cells} free; raise "
                                        f"--kv-cells or lower max_tokens")
                        with self._cv:
                            self._pending.popleft()
                        self._finish(a, error=err)
                        continue
                    return  # waits until running sequences finish
            with self._cv:
                self._pending.popleft()
            a.slot, own.active, own.used = own, a, time.monotonic()  # from here a failure reaches this request
            if donor is None:
                n = 0
            if donor is own or donor is None:
                self.backend.seq_rm(own.seq_id, n)
                del own.ids[n:]
            else:
                self.backend.seq_rm(own.seq_id, 0)
                self.backend.seq_cp(donor.seq_id, own.seq_id, n)
                own.ids = donor.ids[:n]
            a.seq.n_cached, a.seq.n_past = n, n
            a.todo = prompt[n:]
            self.stats["reused"] += n

    def _make_room(self, need: int, own: Slot, donor: Slot | None) -> bool:
        """True when `need` cells fit once `own`'s cache is replaced, dropping idle caches (LRU) if needed."""
        if not self.shared_cells:
            return need <= self.kv_cells  # the slot's own stream (the room rule keeps need within the window)
        if need <= self._free_cells() + len(own.ids):
            return True
        for s in self._idle_slots():
            if s is own or s is donor:
                continue
            self._drop(s)
            if need <= self._free_cells() + len(own.ids):
                return True
        return False

    def _longest_prefix(self, prompt: list[int]) -> tuple[Slot | None, int]:
        if not self.prefix_cache:
            return None, 0
        best, n = None, 0
        for s in self.slots:
            m = min(_common(s.ids, prompt), len(prompt) - 1)
            if m > n:
                best, n = s, m
        return best, n

    # -- one step's batch -----------------------------------------------------------------------------------
    def _plan(self) -> tuple[list[tuple[int, int, int, bool]], list[Slot]]:
        """(token, position, seq id, wants logits) for the batch, and the slot of each entry."""
        entries: list[tuple[int, int, int, bool]] = []
        readers: list[Slot] = []
        for s in self.slots:
            a = s.active
            if a is not None and not a.todo and a.seq.generated:
                entries.append((a.seq.generated[-1], len(s.ids), s.seq_id, True))
                readers.append(s)
        budget = self.n_batch - len(entries)
        if entries:
            budget = min(budget, self.prefill_chunk)
        for s in sorted((s for s in self.slots if s.active is not None and s.active.todo),
                        key=lambda s: s.active.enqueued):
            if budget <= 0:
                break
            a = s.active
            part, a.todo = a.todo[:budget], a.todo[budget:]
            pos0 = len(s.ids)
            for i, t in enumerate(part):
                entries.append((t, pos0 + i, s.seq_id, not a.todo and i == len(part) - 1))
                readers.append(s)
            budget -= len(part)
            self.stats["prefilled"] += len(part)
        self.stats["decoded"] += sum(1 for e in entries if e[3])
        return entries, readers

    # -- leaving ------------------------------------------------------------------------------------------
    def _finish(self, a: Active, error: BaseException | None = None) -> None:
        if a.done:
            return
        a.done = True
        if error is not None:
            a.out.put(error)
        a.out.put(_END)
        if a.slot is not None:
            a.slot.active = None
            a.slot.used = time.monotonic()  # the tokens it fed stay cached: a valid prefix for reuse

    def _drop(self, s: Slot) -> None:
        if s.ids:
            self.backend.seq_rm(s.seq_id, 0)
            s.ids = []


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
