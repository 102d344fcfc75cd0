"""vLLM backend (GPU servers): continuous batching and tensor parallelism behind the same Engine
interface.

Prompts are rendered by ming's template layer and handed to vLLM as token ids, so a model is prompted
exactly as in chat, training and evaluation. vLLM's AsyncLLMEngine runs on its own asyncio loop in a
background thread; `stream()` is a plain iterator that any number of threads may call at once (the
engine batches their sequences together). `features` includes "batching", so `ming serve` runs
`max_concurrency` requests in parallel instead of one at a time.

vllm is imported lazily: on a machine without it (or without a CUDA GPU) `load()` raises
BackendUnavailableError saying what to install or which backend to use instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import queue
import sys
import threading
import uuid
from typing import Any, Iterator, Sequence

from ming import models
from ming.engine.base import Chunk, Engine, GenerationConfig
from ming.errors import BackendUnavailableError
from ming.templates import Template, detect

_DONE = object()


def sampling_kwargs(gen: GenerationConfig, stop_strings: Sequence[str], stop_token_ids: Sequence[int],
                    max_new_tokens: int) -> dict[str, Any]:
    """GenerationConfig -> keyword arguments of vllm.SamplingParams (pure; tested without vllm)."""
    kw: dict[str, Any] = {
        "n": 1,
        "max_tokens": int(max_new_tokens),
        "temperature": 0.0 if gen.greedy else float(gen.temperature),
        "top_p": 1.0 if gen.greedy else float(gen.top_p),
        "top_k": (gen.top_k if gen.top_k > 0 else -1) if not gen.greedy else -1,
        "repetition_penalty": float(gen.repetition_penalty),
        "stop": sorted({s for s in tuple(stop_strings) + tuple(gen.stop) if s}),
        "stop_token_ids": sorted(set(int(t) for t in stop_token_ids)),
        "skip_special_tokens": True,
    }
    if gen.seed is not None:
        kw["seed"] = int(gen.seed)
    return kw


def _finish(reason: str | None) -> str:
    return {"stop": "stop", "length": "length", "abort": "cancelled"}.get(reason or "", "stop")


class VLLMEngine(Engine):
    backend = "vllm"

    def __init__(self, async_engine: Any, tokenizer: Any, template: Template, name: str, context_length: int,
                 max_concurrency: int = 64, lora_request: Any = None):
        super().__init__()
        self.engine = async_engine
        self.tokenizer = tokenizer
        self.template = template
        self.name = name
        self.context_length = int(context_length)
        self.max_concurrency = int(max_concurrency)
        self.lora_request = lora_request
        self.stop_ids = template.stop_token_ids()
        self.features = frozenset({"seed", "top_k", "repetition_penalty", "prefix_cache", "batching"})
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ming-vllm-loop", daemon=True)
        self._thread.start()

    def stream(self, prompt_ids: Sequence[int], gen: GenerationConfig,
               cancel: threading.Event | None = None) -> Iterator[Chunk]:
        from vllm import SamplingParams

        gen.validate()
        prompt_ids = [int(t) for t in prompt_ids]
        if gen.num_beams > 1:
            print("[ming] the vllm backend streams sampled / greedy answers; beam search is ignored", file=sys.stderr)
        max_new = self.room(len(prompt_ids), gen)  # the same rule as ming's own loop (ming.engine.loop)
        params = SamplingParams(**sampling_kwargs(gen, self.template.stop_strings, self.stop_ids, max_new))
        request_id = f"ming-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        out: queue.Queue = queue.Queue()

        async def produce():
            try:
                kwargs = {"lora_request": self.lora_request} if self.lora_request is not None else {}
                async for res in self.engine.generate({"prompt_token_ids": prompt_ids}, params, request_id, **kwargs):
                    out.put(res)
                    if cancel is not None and cancel.is_set():
                        await self.engine.abort(request_id)
                        break
            except BaseException as exc:  # handed to the consuming thread
                out.put(exc)
            finally:
                out.put(_DONE)

        fut = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        emitted = 0
        last = None
        cancelled = False
        try:
            while True:
                try:
                    item = out.get(timeout=0.1)
                except queue.Empty:
                    if cancel is not None and cancel.is_set() and not cancelled:
                        cancelled = True
                        asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self._loop)
                    continue
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                last = item
                text = item.outputs[0].text
                # vLLM's cumulative text is UTF-8 safe (it holds back incomplete characters itself)
                if len(text) > emitted:
                    yield Chunk(text=text[emitted:])
                    emitted = len(text)
        finally:
            if not fut.done():
                asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self._loop)
        comp = last.outputs[0] if last is not None else None
        finish = "cancelled" if (cancel is not None and cancel.is_set()) else _finish(getattr(comp, "finish_reason", None))
        yield Chunk(text="", finish_reason=finish, prompt_tokens=len(prompt_ids),
                    completion_tokens=len(getattr(comp, "token_ids", ()) or ()),
                    cached_tokens=int(getattr(last, "num_cached_tokens", 0) or 0) if last is not None else 0)

    def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)


def _require_vllm_and_gpu() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise BackendUnavailableError(
            "--backend vllm needs the vllm package, which is not installed here. On a Linux machine with NVIDIA "
            "GPUs run `pip install 'ming[gpu]'` (or `pip install vllm`); on this machine use --backend hf or "
            "llamacpp (the default `auto` picks one).")
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install reads as no GPU
        gpus = 0
    if gpus == 0:
        raise BackendUnavailableError(
            "--backend vllm needs a CUDA GPU, and torch sees none here (torch.cuda.is_available() is False). "
            "Run on a GPU machine, or use --backend hf / llamacpp on CPU.")


def load(ref, template_name: str | None = None, opts: Any = None, max_concurrency: int = 64) -> VLLMEngine:
    """Load `ref` (ming.models.ModelRef) into vLLM's AsyncLLMEngine. `opts` is ming.config.ModelOptions
    (tensor_parallel_size, dtype, context_length, prefix_cache)."""
    _require_vllm_and_gpu()
    import torch
    from vllm import AsyncEngineArgs, AsyncLLMEngine

    tp = int(getattr(opts, "tensor_parallel_size", 1) or 1)
    if tp > torch.cuda.device_count():
        raise BackendUnavailableError(f"--tensor-parallel-size {tp} needs {tp} GPUs; this machine has "
                                      f"{torch.cuda.device_count()}")
    lora_request = None
    model_ref = ref
    if ref.kind == "lora":
        from vllm.lora.request import LoRARequest

        model_ref = ref.base
        lora_request = LoRARequest("ming-adapter", 1, str(ref.path))
    # vLLM reads safetensors checkpoints; a GGUF is dequantized once into one (ming.models caches it)
    model_dir = models.hf_checkpoint_dir(model_ref) if model_ref.kind == "gguf" else model_ref.path
    tok = models.load_tokenizer(model_ref)
    name = template_name or models.trained_template(model_ref) or detect(tok, models.model_type(model_ref))
    dtype = getattr(opts, "dtype", "auto") or "auto"
    ctx = getattr(opts, "context_length", None)
    if not ctx:  # the model's own window; passed to vLLM so both sides agree
        from transformers import AutoConfig

        ctx = models.context_length(AutoConfig.from_pretrained(str(model_dir)))
    args = AsyncEngineArgs(
        model=str(model_dir),
        tokenizer=str(model_dir),
        tensor_parallel_size=tp,
        dtype=dtype,
        max_model_len=int(ctx),
        enable_prefix_caching=bool(getattr(opts, "prefix_cache", True)),
        enable_lora=lora_request is not None,
        trust_remote_code=False,
    )
    engine = AsyncLLMEngine.from_engine_args(args)
    print(f"[ming] loaded {ref.describe()} with vLLM on {tp} GPU(s) (tensor parallel {tp}), template {name}, "
          f"context {ctx}", file=sys.stderr)
    return VLLMEngine(engine, tok, Template(name, tok), name=ref.display, context_length=ctx, lora_request=lora_request,
                      max_concurrency=max_concurrency)
