"""The one streaming generation interface every backend implements, and the settings it takes."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Sequence, TypeVar

from ming.config import option
from ming.errors import MingError
from ming.templates import Message, Rendered, Template

K = TypeVar("K")
DEFAULT_MAX_CONTEXT = 8192  # tokens of context unless --context-length asks for more (llama.cpp allocates it up front)


@dataclass
class GenerationConfig:
    """Decoding settings. temperature 0 = greedy. num_beams > 1 = deterministic beam search
    (temperature / top_p / top_k are then ignored, with a notice: beams never sample)."""

    max_new_tokens: int = option(512, "most tokens per answer", flags=("--max-new-tokens", "--max-new-token"))
    temperature: float = option(0.7, "sampling temperature; 0 = greedy")
    top_p: float = option(0.9, "nucleus sampling mass, 1 = off")
    top_k: int = option(0, "sample from the k most likely tokens, 0 = off")
    repetition_penalty: float = option(1.0, "penalise tokens already in the conversation, 1.0 = off")
    num_beams: int = option(1, "beam search width; > 1 decodes deterministically (temperature, top-p, top-k ignored; "
                               "transformers backend)", flags=("--beam-size", "--num-beams"))
    seed: int | None = option(None, "seed for sampling (same seed, same answer)")
    stop: tuple[str, ...] = option((), "extra stop strings, on top of the template's", cli=False)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0 or self.num_beams > 1

    def replace(self, **kw) -> "GenerationConfig":
        return replace(self, **kw)

    def validate(self) -> "GenerationConfig":
        if self.max_new_tokens < 1:
            raise MingError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise MingError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise MingError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.num_beams < 1:
            raise MingError("top_k must be >= 0 and num_beams >= 1")
        if self.repetition_penalty <= 0:
            raise MingError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        return self


@dataclass
class Chunk:
    """A piece of a streamed answer. The last chunk has finish_reason set."""

    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the KV cache


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    info: dict = field(default_factory=dict)


class Engine(ABC):
    """A loaded model that turns prompt token ids into a stream of text chunks.

    Backends: `hf` (transformers, any device), `llamacpp` (GGUF on CPU), `vllm` (GPU servers).
    Prompts are always rendered by ming's template layer, so every backend sees identical ids."""

    backend: str = "?"
    name: str = "?"
    template: Template
    tokenizer: Any
    context_length: int = 2048
    features: frozenset[str] = frozenset()  # e.g. {"beam", "loglik", "prefix_cache", "seed"}

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one generation at a time per engine; servers queue in front

    # -- to implement ---------------------------------------------------------------------------
    @abstractmethod
    def stream(self, prompt_ids: Sequence[int], gen: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        """Yield text chunks as they are generated; the last chunk carries finish_reason and usage."""

    def loglikelihood(self, context_ids: Sequence[int], continuation_ids: Sequence[int]) -> float:
        """Sum of log-probabilities of continuation given context (for multiple-choice scoring)."""
        raise NotImplementedError(f"the {self.backend} backend cannot score log-likelihoods")

    def score_continuations(self, context_ids: Sequence[int],
                            continuations: Mapping[K, Sequence[int]]) -> dict[K, float]:
        """{key: sum log p(continuation | context)} for several continuations of one context (the answer
        options of a question). Backends with their own token loop encode the context once."""
        return {k: self.loglikelihood(context_ids, c) for k, c in continuations.items()}

    def reset_cache(self) -> None:
        """Forget any reused KV/prefix cache (new chat, undo)."""

    def close(self) -> None:
        pass

    # -- shared ---------------------------------------------------------------------------------
    def room(self, n_prompt: int, gen: GenerationConfig) -> int:
        """How many tokens a reply to an `n_prompt`-token prompt may have: gen.max_new_tokens, clamped to the
        room the context window leaves. A prompt that fills the window is an error (callers fit the history
        first; see ming.session / ming.respond)."""
        if n_prompt < 1:
            raise MingError("empty prompt: nothing to generate from")
        if n_prompt >= self.context_length:
            raise MingError(f"the prompt is {n_prompt} tokens and max_new_tokens is {gen.max_new_tokens}, but the "
                            f"context window is {self.context_length} tokens, so no room is left for an answer; "
                            f"shorten the conversation or raise --context-length")
        return min(gen.max_new_tokens, self.context_length - n_prompt)

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> Rendered:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt)

    def chat_stream(self, messages: Sequence[Message], gen: GenerationConfig,
                    cancel: threading.Event | None = None) -> Iterator[Chunk]:
        return self.stream(self.render(messages).ids, gen, cancel)

    def generate(self, prompt_ids: Sequence[int], gen: GenerationConfig,
                 cancel: threading.Event | None = None) -> Completion:
        parts, last = [], Chunk()
        for ch in self.stream(prompt_ids, gen, cancel):
            parts.append(ch.text)
            last = ch
        return Completion("".join(parts), last.finish_reason or "stop", last.prompt_tokens,
                          last.completion_tokens, last.cached_tokens)

    def chat(self, messages: Sequence[Message], gen: GenerationConfig) -> Completion:
        return self.generate(self.render(messages).ids, gen)
