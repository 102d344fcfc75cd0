"""llama.cpp backend: GGUF models natively on CPU, through llama-cpp-python's C API.

Prompts are the token ids ming's template layer renders (the same ids every backend sees). ming's shared
token loop (`ming.engine.loop`: prefix reuse, sampling, stop handling, UTF-8-safe streaming through the
model's Hugging Face tokenizer, log-likelihood scoring) runs the reply; this backend supplies the forward
pass: `llama_decode` over the context's KV cache, trimmed after a reused prefix with `llama_memory_seq_rm`.

With `max_batch` > 1 (`ming serve --max-batch`) the context holds that many sequences more, each in its own
KV stream of one context window (or, with `kv_unified`, all in one pool of `kv_cells` cells), and `stream`
hands each request to `ming.engine.batch.BatchRunner`, which advances every running sequence with one
`llama_decode` per step (continuous batching). Sequence id 0 stays the one-sequence path (log-likelihood
scoring), behind the same lock as the runner's steps.

With `scoring_sequence` a one-sequence engine (`ming chat --triage-model`) holds a second sequence (id 1, a KV
stream of one more context window): `score_continuations` runs there with its own prefix cache
(`_ScoringSequence`), so a scoring call between two turns leaves the conversation's cached tokens on sequence 0
(in a stream of its own, so its logits are those of a one-sequence engine) and the next turn reads only its new
tokens.

The AMX crash: llama.cpp's AMX matmul path, built by GCC 12, faults on its first batched matmul (its tile
configuration is lost to dead-store elimination; docs/serve.md). scripts/install_llamacpp.sh builds without AMX
code unless MING_LLAMACPP_AMX=1 (then with AMX and the fix); a build with AMX is loaded with
`use_extra_bufts=False` (no AMX buffer type) unless MING_LLAMACPP_AMX=1 is set at run time too.

Batch invariance (`batch_invariant`, the engine's default and `ming eval`'s): a batching engine loads without
the repacked ("extra") weight buffers. Their matmul kernels switch between a one-row and a several-row kernel by
batch size and sum in a different order, so a request's logits would depend on what else was in its step.
Without them the quantized kernels compute every output element the same way whatever the batch, flash
attention reads each sequence's cells in order and skips the others, and a request gets bit-identical logits
alone or batched (tests/test_batching.py). `ming serve` keeps the repacked kernels unless `--batch-invariant`:
on the Q4_K 1.5B they give 1.4x the throughput of 8 clients (bench/serve.py), and a greedy
near-tie may then go either way with the batch, as on other batching servers."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any, Iterator, Mapping, Sequence

from ming import envs, models
from ming.engine import threads as thread_policy
from ming.engine.base import DEFAULT_MAX_CONTEXT, Chunk, GenerationConfig, K
from ming.engine.batch import BatchRunner
from ming.engine.loop import LoopEngine
from ming.engine.threads import AdaptiveThreads
from ming.errors import MingError
from ming.models import lora_gguf
from ming.templates import Template, detect

N_BATCH = 512
PREFILL_CHUNK = 128  # prompt tokens per batched step while other sequences decode (bench/serve.py)

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
        if verbose or (level in (3, 4) and b"control-looking token" not in text and b"cannot use buft" not in text
                                           and b"default pooling_type" not in text):  # known harmless notes
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


def default_extra_bufts(max_batch: int, batch_invariant: bool) -> bool:
    """Whether to load the repacked ("extra") weight buffers, AMX's among them: not for a batch-invariant batching
    engine (their kernels sum differently per batch), and on a build with AMX kernels only with
    MING_LLAMACPP_AMX=1 (a build made by `MING_LLAMACPP_AMX=1 scripts/install_llamacpp.sh`, with the fix)."""
    amx_ok = not build_has_amx() or envs.llamacpp_amx()
    return amx_ok and (max_batch == 1 or not batch_invariant)


class LlamaCppEngine(LoopEngine):
    backend = "llamacpp"

    def __init__(self, path: str, tokenizer: Any, template: Template, name: str = "model", threads: int = 1,
                 context_length: int | None = None, prefix_cache: bool = True, n_batch: int = N_BATCH,
                 use_extra_bufts: bool | None = None, use_mmap: bool = True, lora_path: str | None = None,
                 lora_scale: float = 1.0, adaptive_threads: bool = False, max_batch: int = 1,
                 kv_cells: int | None = None, prefill_chunk: int = PREFILL_CHUNK, kv_unified: bool = False,
                 batch_invariant: bool = True, scoring_sequence: bool = False):
        super().__init__()
        import numpy as np

        self._runner: BatchRunner | None = None
        self._runner_batch = None
        self._scorer: _ScoringSequence | None = None

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
            use_extra_bufts = default_extra_bufts(max_batch, batch_invariant)
        self.batch_invariant = max_batch == 1 or not use_extra_bufts
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
        if max_batch < 1:
            raise MingError(f"--max-batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        # + sequence 0, the one-sequence path, beside a batch; + sequence 1, the scoring path, beside a chat
        n_seq = max_batch + 1 if max_batch > 1 else 2 if scoring_sequence else 1
        self.kv_unified = kv_unified or n_seq == 1
        if self.kv_unified:
            self.kv_cells = int(kv_cells or (self.context_length if n_seq == 1 else 2 * self.context_length))
            if self.kv_cells < self.context_length:
                raise MingError(f"--kv-cells {self.kv_cells} is smaller than the context window ({self.context_length} "
                                f"tokens): one long conversation could never fit; raise --kv-cells or lower "
                                f"--context-length")
            n_ctx = self.kv_cells
        else:  # one stream of a full window per sequence
            if kv_cells is not None:
                raise MingError("--kv-cells sizes the shared pool of --kv-unified; without it every request has its "
                                "own context window (--context-length)")
            self.kv_cells = self.context_length
            n_ctx = n_seq * self.context_length
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = self.n_batch
        cp.n_ubatch = self.n_batch
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.n_seq_max = n_seq
        cp.kv_unified = self.kv_unified  # one pool: a shared prefix is shared cells; else a stream per sequence
        cp.no_perf = True
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            L.llama_model_free(self._model)
            raise MingError(f"llama.cpp could not create a context of {n_ctx} KV cells for {path}; "
                            f"lower --context-length or --max-batch")
        self.ctx_lock = threading.RLock()  # the runner's steps and the one-sequence calls take turns
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(self.n_batch, 0, 1)
        self._ids: list[int] = []  # tokens whose keys/values are in the KV cache, in order
        self._closed = False
        self.lora_path = lora_path
        if lora_path:
            self._apply_lora(lora_path, lora_scale)
        if max_batch == 1 and scoring_sequence:
            self._scorer = _ScoringSequence(self, seq_id=1)
        if max_batch > 1:
            self._runner_batch = L.llama_batch_init(self.n_batch, 0, 1)
            self.features = self.features | {"batching"}
            self.max_concurrency = max_batch  # ming serve runs this many requests at once
            self._runner = BatchRunner(self, max_batch=max_batch, kv_cells=self.kv_cells, n_batch=self.n_batch,
                                       prefill_chunk=prefill_chunk, stop_ids=self.stop_ids,
                                       prefix_cache=prefix_cache, shared_cells=self.kv_unified,
                                       other_cells=lambda: len(self._ids),
                                       on_start=self._governor.start, on_step=self._governor.step)

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

    # -- generation: the shared loop, or the batch runner ------------------------------------------------
    def stream(self, prompt_ids: Sequence[int], gen: GenerationConfig, cancel=None) -> Iterator[Chunk]:
        if self._runner is None or gen.num_beams > 1:
            yield from super().stream(prompt_ids, gen, cancel)
            return
        gen.validate()
        yield from self._runner.stream(self.start(prompt_ids, gen), cancel)

    def score_continuations(self, context_ids: Sequence[int],
                            continuations: Mapping[K, Sequence[int]]) -> dict[K, float]:
        """On sequence 0 (beside a batch: the runner's steps wait), or on the scoring sequence when the engine
        has one; the lock is held until the logits are read."""
        with self.ctx_lock:
            if self._scorer is not None:
                return self._scorer.score_continuations(context_ids, continuations)
            return super().score_continuations(context_ids, continuations)

    def batch_stats(self) -> dict:
        """What the batch runner holds now (None without batching)."""
        return self._runner.busy() if self._runner is not None else {}

    # -- the batch runner's backend (called from its thread) ------------------------------------------------
    def decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> int:
        """One llama_decode over (token, position, sequence id, wants logits) entries (at most n_batch)."""
        b = self._runner_batch
        b.n_tokens = len(entries)
        for i, (t, pos, sid, want) in enumerate(entries):
            b.token[i] = t
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = sid
            b.logits[i] = want
        with self.ctx_lock:
            return self.L.llama_decode(self._ctx, b)

    def logits(self, i: int):
        """The logits of batch entry i of the last decode (a view, valid until the next decode)."""
        return self._logits_ptr(i)

    def seq_rm(self, seq_id: int, p0: int) -> None:
        with self.ctx_lock:
            self.L.llama_memory_seq_rm(self._mem, seq_id, p0, -1)

    def seq_cp(self, src: int, dst: int, n: int) -> None:
        """`dst` holds the first n cells of `src` (shared cells in one pool; between streams llama.cpp copies a
        whole stream, then the rest is dropped)."""
        with self.ctx_lock:
            if self.kv_unified:
                self.L.llama_memory_seq_cp(self._mem, src, dst, 0, n)
            else:
                self.L.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
                self.L.llama_memory_seq_rm(self._mem, dst, n, -1)

    # -- the backend's part of the shared loop ---------------------------------------------------------
    def _forward(self, tokens: Sequence[int], all_rows: bool = False):
        """Append `tokens` to the cache (in n_batch chunks); return the logits of the last one (a view of
        llama.cpp's buffer, valid until the next call) or, with all_rows, a copy of every one's."""
        return self._append(0, self._ids, tokens, all_rows)

    def _append(self, seq_id: int, ids: list[int], tokens: Sequence[int], all_rows: bool):
        """`_forward` on sequence `seq_id`, whose cached tokens are `ids` (extended here)."""
        with self.ctx_lock:
            return self._append_locked(seq_id, ids, tokens, all_rows)

    def _append_locked(self, seq_id: int, ids: list[int], tokens: Sequence[int], all_rows: bool):
        L, b, np = self.L, self._batch, self.np
        rows = []
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start:start + self.n_batch]
            last_chunk = start + self.n_batch >= len(tokens)
            pos0 = len(ids)
            b.n_tokens = len(part)
            for i, t in enumerate(part):
                b.token[i] = int(t)
                b.pos[i] = pos0 + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq_id
                b.logits[i] = all_rows or (last_chunk and i == len(part) - 1)
            rc = L.llama_decode(self._ctx, b)
            if rc != 0:
                self._trim(seq_id, ids, 0)
                raise MingError(f"llama.cpp could not decode ({rc}): the conversation may exceed the context window "
                                f"of {self.context_length} tokens; start a new chat or raise --context-length")
            ids.extend(int(t) for t in part)
            if all_rows:  # copy now: the next chunk overwrites the logits buffer
                rows += [np.array(self._logits_ptr(i), copy=True) for i in range(len(part))]
        return np.stack(rows) if all_rows else self._logits_ptr(-1)

    def _logits_ptr(self, i: int):
        p = self.L.llama_get_logits_ith(self._ctx, i)
        return self.np.ctypeslib.as_array(p, shape=(self.n_vocab,))

    def _keep(self, n: int) -> None:
        self._trim(0, self._ids, n)

    def _trim(self, seq_id: int, ids: list[int], n: int) -> None:
        """Drop sequence `seq_id`'s cache after its first n tokens (`ids`, trimmed here)."""
        if getattr(self, "_closed", True):
            return
        with self.ctx_lock:
            if n <= 0 and self._runner is None and self._scorer is None:  # the only sequence: clear the memory
                self.L.llama_memory_clear(self._mem, True)
                ids.clear()
            elif n < len(ids):
                self.L.llama_memory_seq_rm(self._mem, seq_id, max(n, 0), -1)
                del ids[max(n, 0):]

    def _apply_threads(self, n: int) -> None:
        self.L.llama_set_n_threads(self._ctx, n, n)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        if self._runner is not None:
            self._runner.close()
        self._closed = True
        L = self.L
        L.llama_batch_free(self._batch)
        if self._runner_batch is not None:
            L.llama_batch_free(self._runner_batch)
        L.llama_free(self._ctx)
        L.llama_model_free(self._model)

    def __del__(self):  # noqa: D105
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _ScoringSequence(LoopEngine):
    """The scoring sequence of a one-sequence llama.cpp engine (`scoring_sequence`): the shared loop's prefix
    reuse and log-likelihood scoring over sequence `seq_id` of the engine's context, with its own list of cached
    tokens. Only `score_continuations` is called on it (by the engine, under its `ctx_lock`)."""

    backend = "llamacpp"

    def __init__(self, engine: LlamaCppEngine, seq_id: int):
        super().__init__()
        self.engine, self.seq_id = engine, seq_id
        self.name, self.tokenizer, self.template = engine.name, engine.tokenizer, engine.template
        self.prefix_cache, self.context_length = engine.prefix_cache, engine.context_length
        self.stop_ids = engine.stop_ids
        self._ids: list[int] = []

    def _keep(self, n: int) -> None:
        self.engine._trim(self.seq_id, self._ids, n)

    def _forward(self, tokens: Sequence[int], all_rows: bool = False):
        return self.engine._append(self.seq_id, self._ids, tokens, all_rows)


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
    if eng._scorer is not None:
        how += ", a second KV sequence for scoring"
    if eng.max_batch > 1:
        how += (f", {eng.max_batch} sequences batched in " +
                (f"a shared pool of {eng.kv_cells} KV cells" if eng.kv_unified else "a KV window each") +
                (", batch-invariant kernels" if eng.batch_invariant else ", repacked kernels"))
    print(f"[ming] loaded {ref.describe()} with llama.cpp on cpu ({how}, context {eng.context_length}),"
          f" template {name}", file=sys.stderr)
    return eng
