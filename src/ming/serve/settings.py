"""Server settings: one dataclass. `ming serve`'s server flags and `--config` keys come from these fields
(ming.config.add_settings), so a setting is declared, defaulted and documented in exactly one place."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ming import envs
from ming.config import (
    CHAT_MODES,
    RETRIEVAL_HELP,
    SAFETY,
    SAFETY_HELP,
    STAGES_OFF_HELP,
    TRIAGE_MODEL_HELP,
    TRIAGE_NGRAM_HELP,
    TRIAGE_PROBE_HELP,
    TRIAGE_THRESHOLD,
    TRIAGE_THRESHOLD_HELP,
    load,
    option,
)
from ming.errors import MingError


@dataclass
class ServeSettings:
    host: str = option("127.0.0.1", "address to bind; 0.0.0.0 exposes the server to the network (put it behind "
                                  "TLS and --api-key)")
    port: int = option(8000, "TCP port")
    api_key: str | None = option(None, "require `Authorization: Bearer KEY` on /v1/* (default: $MING_API_KEY, else no key)")
    log_requests: bool = option(False, "log the messages and answers of each request (patient text! off by default: "
                                     "only ids, token counts and timings are logged)")
    max_queue: int = option(16, "requests that may wait for the model beyond those being generated; more get "
                              "429 with Retry-After")
    max_batch: int = option(8, "requests generated together, one forward pass per token for all of them "
                               "(continuous batching: llamacpp and vllm backends; 1 = one at a time). Default from "
                               "bench/serve.py")
    kv_unified: bool = option(False, "llamacpp batching: keep every request's KV cells in one shared pool of "
                                     "--kv-cells (less memory; a request waits until its prompt and answer fit) "
                                     "instead of a context window per request (default: a request's cells are its own "
                                     "and in order, so its answer does not depend on the others; more memory)")
    kv_cells: int | None = option(None, "size of the --kv-unified pool in tokens (default: 2 x the context window)")
    batch_invariant: bool = option(False, "llamacpp batching: load without llama.cpp's repacked weight kernels, so "
                                          "an answer is bit-identical whatever else shares its step (default: the "
                                          "repacked kernels, 1.4x the throughput of 8 clients on the Q4_K 1.5B; a "
                                          "near-tie can then go either way with the batch)")
    prefill_chunk: int = option(128, "llamacpp batching: prompt tokens read per step while other answers stream "
                                     "(smaller: smoother streams, slower first tokens). Default from bench/serve.py")
    safety: str = option("on", SAFETY_HELP, choices=SAFETY)
    retrieval: bool = option(False, RETRIEVAL_HELP)
    stages_off: str = option("", STAGES_OFF_HELP, metavar="NAME,...")
    triage_model: bool = option(False, TRIAGE_MODEL_HELP + "; per request, before its answer starts (llamacpp, hf)")
    triage_threshold: float = option(TRIAGE_THRESHOLD, TRIAGE_THRESHOLD_HELP)
    triage_ngram: bool | None = option(None, TRIAGE_NGRAM_HELP)
    triage_probe: bool | None = option(None, TRIAGE_PROBE_HELP)
    mode: str = option("qa", "default mode when a request names none: qa = 医疗问答, consult = 智能问诊",
                     choices=CHAT_MODES)
    served_model_name: str | None = option(None, "model id shown in /v1/models and responses (default: the model's "
                                               "name); requests may use it or any other id")
    shutdown_timeout: float = option(5.0, "seconds to let running answers finish on Ctrl-C / SIGTERM before they are "
                                        "cancelled")
    # not flags of their own: the model flags and generation flags shared with `ming chat`
    model: Any = option(None, "ming.config.ModelOptions; None = the embedded default", cli=False)
    generation: Any = option(None, "GenerationConfig: defaults for requests that give none", cli=False)

    def validate(self) -> "ServeSettings":
        if not 0 < self.port < 65536:
            raise MingError(f"--port must be in 1..65535, got {self.port}")
        if self.max_queue < 0:
            raise MingError(f"--max-queue must be >= 0 (0 = no waiting, only the running request), got {self.max_queue}")
        if self.max_batch < 1:
            raise MingError(f"--max-batch must be >= 1 (1 = one request at a time), got {self.max_batch}")
        if self.kv_cells is not None and self.kv_cells < 1:
            raise MingError(f"--kv-cells must be >= 1, got {self.kv_cells}")
        if self.prefill_chunk < 1:
            raise MingError(f"--prefill-chunk must be >= 1, got {self.prefill_chunk}")
        if not 0.0 <= self.triage_threshold <= 1.0:
            raise MingError(f"--triage-threshold is a probability in [0, 1], got {self.triage_threshold}")
        if self.api_key is not None and not self.api_key.strip():
            raise MingError("--api-key is empty; give a key or leave the flag out")
        return self


def from_args(ns: argparse.Namespace, model: Any = None, generation: Any = None) -> ServeSettings:
    settings = load(ServeSettings, ns, model=model, generation=generation)
    if settings.api_key is None:
        settings.api_key = envs.api_key()  # keeps the key out of `ps`
    return settings.validate()
