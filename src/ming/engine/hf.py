"""transformers backend: any HF checkpoint (or a GGUF dequantized once), CPU / CUDA / MPS.

Token-by-token decoding in our own loop so that we can stream, stop on the template's stop tokens,
honour a cancel event, seed each request, and keep the KV cache of the last conversation: a new turn
only encodes the tokens after the longest common prefix with what the cache already holds."""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterator, Sequence

from ming import models
from ming.engine.base import DEFAULT_MAX_CONTEXT, Chunk, Engine, GenerationConfig
from ming.engine.detok import StreamDecoder
from ming.engine.threads import AdaptiveThreads
from ming.models import context_length as ctx_of
from ming.templates import Template, detect


class HFEngine(Engine):
    backend = "hf"

    def __init__(self, model: Any, tokenizer: Any, template: Template, name: str = "model",
                 context_length: int | None = None, prefix_cache: bool = True, threads: int | None = None,
                 adaptive_threads: bool = False):
        super().__init__()
        import torch

        self.torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.name = name

        # the same default window as llama.cpp, so a long chat is cut the same way on every backend
        self.context_length = context_length or min(ctx_of(model.config), DEFAULT_MAX_CONTEXT)
        self.device = next(model.parameters()).device
        self.stop_ids = template.stop_token_ids()
        self.prefix_cache = prefix_cache
        # on CPU, decode on the free cores only (see ming.engine.threads); torch's thread count is per thread,
        # so it is set inside stream(), on the thread that generates
        self.threads = threads or torch.get_num_threads()
        self.adaptive_threads = adaptive_threads and self.device.type == "cpu"
        self._governor = AdaptiveThreads(self.threads, torch.set_num_threads, enabled=self.adaptive_threads)
        self.features = frozenset({"beam", "loglik", "seed", "top_k", "repetition_penalty", "prefix_cache"})
        self._cache_ids: list[int] = []  # tokens whose keys/values are in self._cache
        self._cache = None
        import inspect

        # transformers 5 calls the KV cache `cache`; 4.x called it `past_key_values`
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def _forward(self, ids, cache):
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
        new_cache = out.get("cache") if "cache" in out else out.get("past_key_values")
        return out.logits, new_cache

    # -- KV reuse ---------------------------------------------------------------------------------
    def reset_cache(self) -> None:
        self._cache_ids, self._cache = [], None

    def _take_cache(self, ids: list[int]):
        """Return (cache, n_cached): a cache holding the first n_cached tokens of ids (n < len(ids))."""
        if not self.prefix_cache or self._cache is None:
            return None, 0
        n = 0
        for a, b in zip(self._cache_ids, ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)  # at least one new token must be fed to get logits
        if n <= 0:
            self.reset_cache()
            return None, 0
        cache = self._cache
        extra = cache.get_seq_length() - n
        if extra > 0:
            cache.crop(-extra)  # a negative count removes tokens from the end (transformers 4.x and 5.x)
        self._cache, self._cache_ids = None, []  # owned by this request until stored back
        return cache, n

    # -- sampling -----------------------------------------------------------------------------------
    def _processors(self, gen: GenerationConfig):
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if gen.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(gen.repetition_penalty))
        if not gen.greedy:
            procs.append(TemperatureLogitsWarper(gen.temperature))
            if gen.top_k > 0:
                procs.append(TopKLogitsWarper(gen.top_k))
            if gen.top_p < 1.0:
                procs.append(TopPLogitsWarper(gen.top_p))
        return procs

    def stream(self, prompt_ids: Sequence[int], gen: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        gen.validate()
        prompt_ids = list(prompt_ids)
        if gen.num_beams > 1:
            yield from self._beam(prompt_ids, gen)
            return
        torch = self.torch
        max_new = min(gen.max_new_tokens, max(1, self.context_length - len(prompt_ids)))
        procs = self._processors(gen)
        rng = None
        if not gen.greedy:
            rng = torch.Generator(device="cpu")
            rng.manual_seed(gen.seed if gen.seed is not None else torch.seed())
        decoder = StreamDecoder(self.tokenizer, tuple(self.template.stop_strings) + tuple(gen.stop))
        if self.device.type == "cpu":
            torch.set_num_threads(self._governor.now)
            self._governor.start()
        cache, n_cached = self._take_cache(prompt_ids)
        all_ids = torch.tensor([prompt_ids], device=self.device)
        feed = all_ids[:, n_cached:]
        generated: list[int] = []
        finish, stop_token = "length", 0
        with torch.inference_mode():
            for step in range(max_new):
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                logits, cache = self._forward(feed, cache)
                logits = logits[:, -1, :].float()
                if len(procs):
                    logits = procs(all_ids, logits)
                if rng is None:
                    next_id = int(torch.argmax(logits, dim=-1))
                else:
                    probs = torch.softmax(logits, dim=-1).cpu()
                    next_id = int(torch.multinomial(probs, 1, generator=rng))
                if next_id in self.stop_ids:
                    finish, stop_token = "stop", 1
                    break
                generated.append(next_id)
                text = decoder.add(next_id)
                if text:
                    yield Chunk(text=text)
                if decoder.stopped:
                    finish = "stop"
                    break
                feed = torch.tensor([[next_id]], device=self.device)
                all_ids = torch.cat([all_ids, feed], dim=1)
                self._governor.step()
        tail = decoder.finish()
        # keep the cache for the next turn: it holds prompt + generated[:-1]
        if self.prefix_cache and cache is not None:
            self._cache = cache
            self._cache_ids = (prompt_ids + generated)[: cache.get_seq_length()]
        yield Chunk(text=tail, finish_reason=finish, prompt_tokens=len(prompt_ids),
                    completion_tokens=len(generated) + stop_token,
                    cached_tokens=n_cached)

    def _beam(self, prompt_ids: list[int], gen: GenerationConfig) -> Iterator[Chunk]:
        torch = self.torch
        self.reset_cache()
        ids = torch.tensor([prompt_ids], device=self.device)
        max_new = min(gen.max_new_tokens, max(1, self.context_length - len(prompt_ids)))
        kwargs = dict(max_new_tokens=max_new, num_beams=gen.num_beams, do_sample=False,
                      eos_token_id=sorted(self.stop_ids) or None, early_stopping=True,
                      pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                      else sorted(self.stop_ids)[0] if self.stop_ids else 0)
        if gen.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = gen.repetition_penalty
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, len(prompt_ids):].tolist()
        finish = "length"
        cut = len(new)
        for i, t in enumerate(new):
            if t in self.stop_ids:
                cut, finish = i, "stop"
                break
        decoder = StreamDecoder(self.tokenizer, tuple(self.template.stop_strings) + tuple(gen.stop))
        text = "".join(decoder.add(t) for t in new[:cut]) + decoder.finish()
        if decoder.stopped and finish != "stop" and cut == len(new) and len(new) < max_new:
            finish = "stop"
        yield Chunk(text=text, finish_reason=finish, prompt_tokens=len(prompt_ids), completion_tokens=len(new))

    def loglikelihood(self, context_ids: Sequence[int], continuation_ids: Sequence[int]) -> float:
        torch = self.torch
        ids = torch.tensor([list(context_ids) + list(continuation_ids)], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, use_cache=False).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        n = len(continuation_ids)
        target = ids[0, -n:]
        return float(logp[-n:].gather(1, target[:, None]).sum())


def load(ref, template_name: str | None = None, device: str = "auto", dtype: str = "auto",
         context_length: int | None = None, prefix_cache: bool = True, threads: int | None = None,
         adaptive_threads: bool = False) -> HFEngine:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own messages say what is loading
    model, tok = models.load_hf_model(ref, device=device, dtype=dtype)
    name = template_name or models.trained_template(ref) or detect(tok, getattr(model.config, "model_type", None))
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    eng = HFEngine(model, tok, Template(name, tok), name=ref.display, context_length=context_length,
                   prefix_cache=prefix_cache, threads=threads, adaptive_threads=adaptive_threads)
    where = str(eng.device)
    if eng.device.type == "cpu":
        where += (f", up to {eng.threads} threads, fewer while other processes hold cores" if eng.adaptive_threads
                  else f", {eng.threads} threads")
    print(f"[ming] loaded {ref.describe()} with transformers on {where} "
          f"({str(next(model.parameters()).dtype).replace('torch.', '')}), template {name}", file=sys.stderr)
    return eng
