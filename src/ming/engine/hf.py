"""transformers backend: any HF checkpoint (or a GGUF dequantized once), CPU / CUDA / MPS.

ming's shared token loop (`ming.engine.loop`) runs the reply; this backend supplies the forward pass over a
transformers KV cache (cropped to reuse a conversation's prefix) and, on this backend only, beam search
(transformers' own `generate`)."""

from __future__ import annotations

import inspect
import sys
from typing import Any, Iterator, Sequence

from ming import models
from ming.engine.base import DEFAULT_MAX_CONTEXT, Chunk, GenerationConfig
from ming.engine.detok import StreamDecoder
from ming.engine.loop import LoopEngine
from ming.engine.threads import AdaptiveThreads
from ming.models import context_length as ctx_of
from ming.templates import Template, detect


class HFEngine(LoopEngine):
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
        # so it is set in _begin(), on the thread that generates
        self.threads = threads or torch.get_num_threads()
        self.adaptive_threads = adaptive_threads and self.device.type == "cpu"
        self._governor = AdaptiveThreads(self.threads, torch.set_num_threads, enabled=self.adaptive_threads)
        self.features = frozenset({"beam", "loglik", "seed", "top_k", "repetition_penalty", "prefix_cache"})
        self._ids: list[int] = []  # tokens whose keys/values are in self._cache
        self._cache = None
        # transformers 5 calls the KV cache `cache`; 4.x called it `past_key_values`
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    # -- the backend's part of the shared loop ---------------------------------------------------------
    def _begin(self) -> None:
        if self.device.type == "cpu":
            self.torch.set_num_threads(self._governor.now)
        self._governor.start()

    def _keep(self, n: int) -> None:
        if n <= 0 or self._cache is None:
            self._ids, self._cache = [], None
            return
        extra = self._cache.get_seq_length() - n
        if extra > 0:
            self._cache.crop(-extra)  # a negative count removes tokens from the end (transformers 4.x and 5.x)
        del self._ids[n:]

    def _forward(self, ids: Sequence[int], all_rows: bool = False):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(ids)], device=self.device), use_cache=True,
                             **{self._cache_kw: self._cache})
            self._cache = out.get("cache") if "cache" in out else out.get("past_key_values")
            self._ids.extend(int(t) for t in ids)
            rows = out.logits[0] if all_rows else out.logits[0, -1]
            return rows.float().cpu().numpy()

    def _beam(self, prompt: list[int], gen: GenerationConfig, max_new: int) -> Iterator[Chunk]:
        torch = self.torch
        self.reset_cache()
        ids = torch.tensor([prompt], device=self.device)
        kwargs = dict(max_new_tokens=max_new, num_beams=gen.num_beams, do_sample=False,
                      eos_token_id=sorted(self.stop_ids) or None, early_stopping=True,
                      pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                      else sorted(self.stop_ids)[0] if self.stop_ids else 0)
        if gen.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = gen.repetition_penalty
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = out[0, len(prompt):].tolist()
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
        yield Chunk(text=text, finish_reason=finish, prompt_tokens=len(prompt), completion_tokens=len(new))


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
