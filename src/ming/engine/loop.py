"""The token loop the CPU backends share (transformers and llama.cpp): prefix reuse of the KV cache, the
room rule, sampling, stop tokens and stop strings, UTF-8-safe streaming, cancel, seeds, finish reasons,
usage counts and log-likelihood scoring are written here once.

A backend supplies four things and nothing else:
    _ids                          tokens whose keys/values the cache holds, in order
    _keep(n)                      drop the cache after its first n tokens (0 = empty)
    _forward(ids, all_rows=False) append ids to the cache; return the logits (numpy) of the last one,
                                  or of every one (rows x vocab) when all_rows
    _begin()                      a reply starts (the adaptive thread governor looks at the free cores)
and may offer beam search (`_beam`, transformers only).

KV reuse: a new request keeps the cache up to the longest common prefix with its prompt and encodes only the
rest, so turn N of a consultation costs the new question, not the whole history. /undo, truncation and
edited messages are handled by that prefix match; `reset_cache()` (new chat) clears it.

Each reply is one `SeqState` (its ids, cache position, random stream, decoder and finish reason). Today one
sequence runs at a time per engine (`Engine.lock`); the state is explicit so that a batching backend can
hold several and feed the next token of each in one forward pass."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from ming.engine import sampling
from ming.engine.base import Chunk, Engine, GenerationConfig, K
from ming.engine.detok import StreamDecoder
from ming.errors import MingError


@dataclass
class SeqState:
    """One sequence being generated."""

    prompt: list[int]
    gen: GenerationConfig
    max_new: int  # tokens this reply may have (the room rule applied)
    decoder: StreamDecoder | None  # None in a batch runner's sampling copy (fork_for_runner)
    rng: Any  # numpy Generator; None = greedy
    n_cached: int = 0  # prompt tokens reused from the KV cache
    n_past: int = 0  # tokens of this sequence in the cache (its next position)
    generated: list[int] = field(default_factory=list)
    finish: str | None = None  # "stop" | "length" | "cancelled" once done
    stop_token: int = 0  # 1 when an end-of-turn token ended the reply (it counts as a completion token)

    @property
    def ids(self) -> list[int]:
        return self.prompt + self.generated

    def next_token(self, logits) -> int:
        history = self.ids if self.gen.repetition_penalty != 1.0 else ()
        return sampling.pick(logits, self.gen, history, self.rng)

    def accept(self, token: int, stop_ids: set[int] | frozenset[int]) -> str:
        """Take a sampled token; return the text that became printable. Sets `finish` when the reply ends."""
        if token in stop_ids:
            self.finish, self.stop_token = "stop", 1
            return ""
        self.generated.append(token)
        text = self.decoder.add(token)
        if self.decoder.stopped:
            self.finish = "stop"
        elif len(self.generated) >= self.max_new:
            self.finish = "length"
        return text

    def fork_for_runner(self) -> "SeqState":
        """A copy that samples (same prompt, settings and random stream) for a batch runner, which sends the
        token ids back to this one to be accepted and decoded (ming.engine.batch)."""
        return SeqState(self.prompt, self.gen, self.max_new, None, self.rng)

    def take(self, token: int, stop_ids: set[int] | frozenset[int]) -> bool:
        """The runner's side of `accept`: record a sampled token without decoding; True when the reply ends
        here (an end-of-turn token or the length limit; stop strings are seen by the decoding side)."""
        if token in stop_ids:
            self.finish = "stop"
            return True
        self.generated.append(token)
        if len(self.generated) >= self.max_new:
            self.finish = "length"
            return True
        return False

    def last_chunk(self) -> Chunk:
        return Chunk(text=self.decoder.finish(), finish_reason=self.finish or "length",
                     prompt_tokens=len(self.prompt), completion_tokens=len(self.generated) + self.stop_token,
                     cached_tokens=self.n_cached)


class LoopEngine(Engine):
    """An engine whose backend computes logits and ming runs the loop (see the module docstring)."""

    prefix_cache: bool = True
    stop_ids: set[int]
    _ids: list[int]
    _governor: Any

    # -- the backend's part ------------------------------------------------------------------------
    def _keep(self, n: int) -> None:
        raise NotImplementedError

    def _forward(self, ids: Sequence[int], all_rows: bool = False):
        raise NotImplementedError

    def _begin(self) -> None:
        self._governor.start()

    def _beam(self, prompt: list[int], gen: GenerationConfig, max_new: int) -> Iterator[Chunk]:
        raise MingError(f"the {self.backend} backend has no beam search; `ming` switches to --backend hf for "
                        "--beam-size > 1 (pass --backend auto or hf)")

    # -- shared ----------------------------------------------------------------------------------------
    def reset_cache(self) -> None:
        self._keep(0)

    def _prefill(self, prompt: Sequence[int]) -> tuple[int, Any]:
        """Make the cache hold `prompt`, reusing its longest common prefix with what the cache holds; return
        (prompt tokens reused, logits of the last prompt token)."""
        n = 0
        if self.prefix_cache:
            for a, b in zip(self._ids, prompt):
                if a != b:
                    break
                n += 1
            n = min(n, len(prompt) - 1)  # the last prompt token is always fed, for its logits
        self._keep(n)
        return n, self._forward(prompt[n:])

    def start(self, prompt_ids: Sequence[int], gen: GenerationConfig) -> SeqState:
        """A new sequence for `prompt_ids` (the room rule applied); nothing is computed yet."""
        prompt = [int(t) for t in prompt_ids]
        max_new = self.room(len(prompt), gen)
        decoder = StreamDecoder(self.tokenizer, tuple(self.template.stop_strings) + tuple(gen.stop))
        return SeqState(prompt, gen, max_new, decoder, sampling.new_rng(gen))

    def stream(self, prompt_ids: Sequence[int], gen: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        gen.validate()
        seq = self.start(prompt_ids, gen)
        if gen.num_beams > 1:
            yield from self._beam(seq.prompt, gen, seq.max_new)
            return
        self._begin()
        try:
            seq.n_cached, logits = self._prefill(seq.prompt)
            seq.n_past = len(seq.prompt)
            while True:
                if cancel is not None and cancel.is_set():
                    seq.finish = "cancelled"
                    break
                text = seq.accept(seq.next_token(logits), self.stop_ids)
                if text:
                    yield Chunk(text=text)
                if seq.finish:
                    break
                logits = self._forward(seq.generated[-1:])
                seq.n_past += 1
                self._governor.step()
        except Exception:
            self.reset_cache()  # a failed forward may leave the cache half written
            raise
        yield seq.last_chunk()

    def score_continuations(self, context_ids: Sequence[int],
                            continuations: Mapping[K, Sequence[int]]) -> dict[K, float]:
        """{key: sum log p(continuation | context)}. The context is encoded once (and its KV cache reused
        from the last call when it is the same question); when every continuation is one token (option
        letters) that single forward pass answers them all."""
        ctx = [int(t) for t in context_ids]
        conts = {k: [int(t) for t in c] for k, c in continuations.items()}
        if not ctx or not conts or not all(conts.values()):
            raise MingError("log-likelihood scoring needs a non-empty context and non-empty continuations")
        longest = len(ctx) + max(len(c) for c in conts.values())
        if longest > self.context_length:
            raise MingError(f"{longest} tokens (context {len(ctx)} + the longest continuation) do not fit the "
                            f"context window of {self.context_length}; raise --context-length")
        try:
            _, last = self._prefill(ctx)
            first = sampling.log_softmax(last)  # a copy: the backend's buffer changes with the next forward
            out = {}
            for k, c in conts.items():
                total = float(first[c[0]])
                if len(c) > 1:
                    self._keep(len(ctx))
                    rows = self._forward(c[:-1], all_rows=True)
                    total += sum(float(sampling.log_softmax(row)[t]) for row, t in zip(rows, c[1:]))
                out[k] = total
        except Exception:
            self.reset_cache()
            raise
        return out

    def loglikelihood(self, context_ids: Sequence[int], continuation_ids: Sequence[int]) -> float:
        return self.score_continuations(context_ids, {0: continuation_ids})[0]
