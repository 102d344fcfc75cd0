"""llama.cpp backend: GGUF models natively on CPU, through llama-cpp-python's C API.

Prompts are the token ids ming's template layer renders (the same ids every backend sees). ming's shared
token loop (`ming.engine.loop`: prefix reuse, sampling, stop handling, UTF-8-safe streaming through the
model's Hugging Face tokenizer, log-likelihood scoring) runs the reply; this backend supplies the forward
pass: `llama_decode` over the context's KV cache, trimmed after a reused prefix with `llama_memory_seq_rm`.

The AMX crash: llama.cpp's default build runs an AMX matmul path that dies with "Illegal
instruction" on this kind of Xeon. scripts/install_llamacpp.sh builds without AMX code; if a build
with AMX is loaded anyway, the model is loaded with `use_extra_bufts=False` (no AMX buffer type)."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Sequence

from ming import models
from ming.engine import threads as thread_policy
from ming.engine.base import DEFAULT_MAX_CONTEXT
from ming.engine.loop import LoopEngine
from ming.engine.threads import AdaptiveThreads
from ming.errors import MingError
from ming.models import lora_gguf
from ming.templates import Template, detect

N_BATCH = 512

_backend_ready = False
_log_cb = None  # keep the ctypes callback alive


def _llama():
    import llama_cpp

    return llama_cpp


def _init_backend(L) -> None:
    global _backend_ready, _log_cb
    if _backend_ready:
        return
    verbose = os.environ.get("MING_LOG_LEVEL", "").upper() == "DEBUG"

    @L.llama_log_callback
    def _cb(level, text, user_data):  # warnings (level 3) and up unless debugging, less two expected notes
        if verbose or (level in (3, 4) and b"control-looking token" not in text and b"cannot use buft" not in text):  # a known harmless vocab note
            try:
                sys.stderr.write(text.decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001 - never raise into C
                pass

    _log_cb = _cb
    L.llama_log_set(_log_cb, ctypes.c_void_p(0))
    L.llama_backend_init()
    _backend_ready = True


def system_info() -> str:
    L = _llama()
    return L.llama_print_system_info().decode("utf-8", "replace")


def build_has_amx() -> bool:
    """True if the installed llama.cpp was compiled with AMX kernels (the path that crashes here)."""
    return "AMX" in system_info()


class LlamaCppEngine(LoopEngine):
    backend = "llamacpp"

    def __init__(self, path: str, tokenizer: Any, template: Template, name: str = "model", threads: int = 1,
                 context_length: int | None = None, prefix_cache: bool = True, n_batch: int = N_BATCH,
                 use_extra_bufts: bool | None = None, use_mmap: bool = True, lora_path: str | None = None,
                 lora_scale: float = 1.0, adaptive_threads: bool = False):
        super().__init__()
        import numpy as np

        L = _llama()
        _init_backend(L)
        self.np, self.L = np, L
        self.path = path
        self.tokenizer = tokenizer
        self.template = template
        self.name = name
        self.threads = threads  # the most threads to use
        self.adaptive_threads = adaptive_threads  # fewer while other processes hold cores (threads.free_cores)

        self._governor = AdaptiveThreads(threads, self._apply_threads, enabled=adaptive_threads)
        self.prefix_cache = prefix_cache
        self.stop_ids = template.stop_token_ids()
        self.features = frozenset({"seed", "top_k", "repetition_penalty", "prefix_cache", "loglik"})
        if use_extra_bufts is None:
            use_extra_bufts = not build_has_amx()
        self.use_extra_bufts = use_extra_bufts

        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = use_extra_bufts  # False: no AMX/repack buffer types (the crash fix)
        if hasattr(mp, "load_mode") and not use_mmap:
            mp.load_mode = L.LLAMA_LOAD_MODE_NONE
        self._model = L.llama_model_load_from_file(path.encode("utf-8"), mp)
        if not self._model:
            raise MingError(f"llama.cpp could not load {path}: not a GGUF model it understands (see the error above); "
                            f"try --backend hf")
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = L.llama_vocab_n_tokens(self._vocab)
        if self.n_vocab < len(tokenizer):
            raise MingError(f"{path} has {self.n_vocab} tokens but its tokenizer has {len(tokenizer)}; "
                            f"the GGUF and tokenizer do not belong together")
        train_ctx = L.llama_model_n_ctx_train(self._model)
        self.context_length = int(context_length or min(train_ctx, DEFAULT_MAX_CONTEXT))
        self.n_batch = min(n_batch, self.context_length)
        cp = L.llama_context_default_params()
        cp.n_ctx = self.context_length
        cp.n_batch = self.n_batch
        cp.n_ubatch = self.n_batch
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.n_seq_max = 1
        cp.no_perf = True
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            L.llama_model_free(self._model)
            raise MingError(f"llama.cpp could not create a context of {self.context_length} tokens for {path}; "
                            f"lower --context-length")
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(self.n_batch, 0, 1)
        self._ids: list[int] = []  # tokens whose keys/values are in the KV cache, in order
        self._closed = False
        self.lora_path = lora_path
        if lora_path:
            self._apply_lora(lora_path, lora_scale)

    def _apply_lora(self, lora_path: str, scale: float) -> None:
        """Run base + a GGUF LoRA adapter (lora_gguf.py writes them); freed with the model."""
        L = self.L
        adapter = L.llama_adapter_lora_init(self._model, str(lora_path).encode("utf-8"))
        if not adapter:
            self.close()
            raise MingError(f"llama.cpp could not load the LoRA adapter {lora_path} on {self.path} (see the error "
                            f"above: a different base model or architecture?); try --backend hf")
        arr = (L.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(float(scale))
        if L.llama_set_adapters_lora(self._ctx, arr, 1, scales) != 0:
            self.close()
            raise MingError(f"llama.cpp could not apply the LoRA adapter {lora_path}")
        self._lora = adapter

    # -- the backend's part of the shared loop ---------------------------------------------------------
    def _forward(self, tokens: Sequence[int], all_rows: bool = False):
        """Append `tokens` to the cache (in n_batch chunks); return the logits of the last one (a view of
        llama.cpp's buffer, valid until the next call) or, with all_rows, a copy of every one's."""
        L, b, np = self.L, self._batch, self.np
        rows = []
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start:start + self.n_batch]
            last_chunk = start + self.n_batch >= len(tokens)
            pos0 = len(self._ids)
            b.n_tokens = len(part)
            for i, t in enumerate(part):
                b.token[i] = int(t)
                b.pos[i] = pos0 + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = all_rows or (last_chunk and i == len(part) - 1)
            rc = L.llama_decode(self._ctx, b)
            if rc != 0:
                self.reset_cache()
                raise MingError(f"llama.cpp could not decode ({rc}): the conversation may exceed the context window "
                                f"of {self.context_length} tokens; start a new chat or raise --context-length")
            self._ids.extend(int(t) for t in part)
            if all_rows:  # copy now: the next chunk overwrites the logits buffer
                rows += [np.array(self._logits_ptr(i), copy=True) for i in range(len(part))]
        return np.stack(rows) if all_rows else self._logits_ptr(-1)

    def _logits_ptr(self, i: int):
        p = self.L.llama_get_logits_ith(self._ctx, i)
        return self.np.ctypeslib.as_array(p, shape=(self.n_vocab,))

    def _keep(self, n: int) -> None:
        if getattr(self, "_closed", True):
            return
        if n <= 0:
            self.L.llama_memory_clear(self._mem, True)
            self._ids.clear()
        elif n < len(self._ids):
            self.L.llama_memory_seq_rm(self._mem, 0, n, -1)
            del self._ids[n:]

    def _apply_threads(self, n: int) -> None:
        self.L.llama_set_n_threads(self._ctx, n, n)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        L = self.L
        L.llama_batch_free(self._batch)
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)

    def __del__(self):  # noqa: D105
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def load(ref, template_name: str | None = None, threads: int | None = None, context_length: int | None = None,
         prefix_cache: bool = True, **kw) -> LlamaCppEngine:

    lora_path = None
    if ref.kind == "lora" and ref.base is not None and ref.base.kind == "gguf":
        lora_path = str(lora_gguf.cached(ref.path, lora_gguf.gguf_arch(ref.base.path), name=ref.display))
        ref_model = ref.base
    else:
        ref_model = ref
    if ref_model.kind != "gguf":
        raise MingError(f"the llamacpp backend runs GGUF files; {ref.describe()} is a {ref.kind} model. Convert it "
                        f"with `ming models convert {ref.path} --out model.gguf`, or use --backend hf")
    n_threads = thread_policy.resolve(threads)
    kw.setdefault("adaptive_threads", thread_policy.adaptive(threads))
    tok = models.load_tokenizer(ref)
    name = template_name or detect(tok, models.model_type(ref))
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    eng = LlamaCppEngine(str(ref_model.path), tok, Template(name, tok), name=ref.display, threads=n_threads,
                         context_length=context_length, prefix_cache=prefix_cache, lora_path=lora_path, **kw)
    how = f"up to {n_threads} threads, fewer while other processes hold cores" if eng.adaptive_threads else \
        f"{n_threads} threads"
    print(f"[ming] loaded {ref.describe()} with llama.cpp on cpu ({how}, context {eng.context_length}),"
          f" template {name}", file=sys.stderr)
    return eng
