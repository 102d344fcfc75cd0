"""Choose and load a backend for a model: `auto` runs a GGUF natively with llama.cpp on CPU when it
is installed (generation and log-likelihood scoring), everything else, and beam search (which
llama.cpp lacks), with transformers."""

from __future__ import annotations

import importlib.util
import sys

from ming import models
from ming.engine import hf, threads
from ming.errors import BackendUnavailableError

BACKENDS = ("auto", "hf", "llamacpp", "vllm")


def llamacpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("ming.engine.llamacpp") is not None


def embedded_runnable(key: str) -> tuple[bool, str]:
    """Whether the embedded model `key` can run on llama.cpp here (llama.cpp installed; its GGUF assembled or its
    parts installed), and a phrase naming it or saying why not (the model steps of the safety layer)."""
    from ming.models import embedded

    if not llamacpp_available():
        return False, "llama.cpp is not installed (bash scripts/install_llamacpp.sh)"
    m = embedded.get(key)
    if not (embedded.is_ready(m) or all(p.path is not None for p in embedded.parts(m))):
        return False, f"the embedded {key} is not installed (`ming models` shows how to install it)"
    return True, f"the embedded {key}"


def _cpu(device: str) -> bool:
    """device auto means CPU unless torch sees a GPU (asked without importing torch when it can be)."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    if importlib.util.find_spec("torch") is None:
        return True
    import torch

    return not torch.cuda.is_available()


def choose(opts, ref, need_beam: bool = False) -> str:
    backend = opts.backend
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "llamacpp" and need_beam:
        print("[ming] llama.cpp has no beam search: using the transformers backend for --beam-size > 1",
              file=sys.stderr)
        return "hf"
    if backend != "auto":
        return backend
    gguf = ref.kind == "gguf" or (ref.kind == "lora" and ref.base is not None and ref.base.kind == "gguf")
    if gguf and _cpu(opts.device) and not need_beam and llamacpp_available():  # a LoRA runs as a GGUF adapter
        return "llamacpp"
    if gguf and need_beam and llamacpp_available():
        print("[ming] llama.cpp has no beam search: using the transformers backend for --beam-size > 1",
              file=sys.stderr)
    return "hf"


def create(opts, need_beam: bool = False, max_batch: int = 1, batching: dict | None = None,
           scoring_sequence: bool = False):
    ref = models.resolve(opts.model_path, opts.model_base, allow_download=opts.allow_download)
    backend = choose(opts, ref, need_beam=need_beam)
    n_threads = threads.configure(opts.threads)
    if backend == "hf":
        if max_batch > 1:
            print("[ming] the transformers backend generates one sequence at a time: --max-batch applies to the "
                  "llamacpp and vllm backends", file=sys.stderr)
        return hf.load(ref, opts.conv_template, device=opts.device, dtype=opts.dtype,
                       context_length=opts.context_length, prefix_cache=opts.prefix_cache, threads=n_threads,
                       adaptive_threads=threads.adaptive(opts.threads))
    if backend == "llamacpp":
        try:
            from ming.engine import llamacpp
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the llamacpp backend needs llama-cpp-python ({exc}). Install it with `bash scripts/setup.sh` "
                "(it builds llama-cpp-python with the flags this CPU needs), or use --backend hf."
            ) from exc
        return llamacpp.load(ref, opts.conv_template, threads=opts.threads, context_length=opts.context_length,
                             prefix_cache=opts.prefix_cache, max_batch=max_batch, scoring_sequence=scoring_sequence,
                             **({k: v for k, v in (batching or {}).items() if v is not None} if max_batch > 1 else {}))
    if backend == "vllm":
        try:
            from ming.engine import vllm as vllm_backend
        except ImportError as exc:
            raise BackendUnavailableError(f"the vllm backend is not available: {exc}") from exc
        return vllm_backend.load(ref, opts.conv_template, opts, max_concurrency=max_batch if max_batch > 1 else 64)
    raise BackendUnavailableError(f"unknown backend {backend!r}")
