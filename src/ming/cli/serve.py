"""`ming serve`: the OpenAI-compatible HTTP server and the web consultation page."""

from __future__ import annotations

import argparse
import sys

from ming import DISCLAIMER, envs
from ming.cli.common import (
    GENERATION_GROUP,
    MODEL_GROUP,
    generation_config,
    model_options,
)
from ming.config import ModelOptions, add_settings
from ming.engine import create_engine
from ming.engine.base import GenerationConfig
from ming.errors import MingError
from ming.serve.app import build_app, serve_stages
from ming.serve.server import make_server
from ming.serve.settings import ServeSettings, from_args

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(sub, name: str, help_text: str):
    p = sub.add_parser(name, help=help_text, description=(
        "Serve a medical model over HTTP: OpenAI's POST /v1/chat/completions (streaming or not), GET /v1/models, "
        "GET /health, and a web page at / with the two modes 医疗问答 and 智能问诊. The generation flags set the "
        "defaults for requests that do not give their own. With no --model-path the embedded default model runs "
        "offline on CPU. Binds to 127.0.0.1 unless --host says otherwise."))
    add_settings(p, ModelOptions, GenerationConfig, ServeSettings, groups=(MODEL_GROUP, GENERATION_GROUP, "server"))
    p.set_defaults(func=run)
    return p


def _check_port(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise MingError(f"cannot listen on {host}:{port} ({exc.strerror}); is another server running there? "
                            f"Pick another port with --port, e.g. `ming serve --port {port + 1}`") from None


def _setup_logging() -> None:
    import logging

    logger = logging.getLogger("ming")
    if not logger.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(h)
    level = logging.getLevelName(envs.log_level())
    level = level if isinstance(level, int) else logging.WARNING
    logger.setLevel(level)
    logging.getLogger("ming.serve").setLevel(min(level, logging.INFO))  # one line per request (no patient text)


def _batching(engine) -> str:
    if "batching" not in engine.features:
        return "one request at a time"
    if getattr(engine, "kv_unified", False):
        return f"{engine.max_concurrency} requests batched in a pool of {engine.kv_cells} KV cells"
    return f"{engine.max_concurrency} requests batched" + (", a KV window each" if hasattr(engine, "kv_cells") else "")


def _probe_on(stages) -> bool:
    return any(getattr(s, "probe", False) for s in stages)


def _ngram_on(stages) -> bool:
    return any(getattr(s, "ngram", False) for s in stages)


def _english_on(stages) -> bool:
    """Whether the bound safety stage asks the model about English messages (SafetyStage `reads_english`)."""
    return any(getattr(s, "reads_english", False) for s in stages)


def run(args: argparse.Namespace) -> int:
    _setup_logging()
    gen = generation_config(args)
    opts = model_options(args)
    settings = from_args(args, model=opts, generation=gen)
    _check_port(settings.host, settings.port)
    if settings.host not in LOCAL_HOSTS and not settings.api_key:
        print(f"[ming] warning: listening on {settings.host} without --api-key: anyone who can reach this port can "
              "use the model", file=sys.stderr)
    stages = serve_stages(settings)  # fails before the (slow) model load
    engine = create_engine(opts, need_beam=gen.num_beams > 1, max_batch=settings.max_batch,
                           batching={"kv_cells": settings.kv_cells, "kv_unified": settings.kv_unified,
                                     "prefill_chunk": settings.prefill_chunk,
                                     "batch_invariant": settings.batch_invariant},
                           scoring_sequence=settings.triage_model)
    app = build_app(settings, engine, stages=stages)
    english = " (English: the model's 是/否)" if _english_on(stages) else ""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    print(f"[ming] {DISCLAIMER}", file=sys.stderr)
    print(f"[ming] serving {app.state.service.model_name} ({engine.backend}, context {engine.context_length} tokens, "
          f"{_batching(engine)}, safety {settings.safety}"
          f"{f' + model triage at p(是) >= {settings.triage_threshold}' if settings.triage_model else ''}"
          f"{' + n-gram triage' if _ngram_on(stages) else ''}"
          f"{english}"
          f"{' + triage probe' if _probe_on(stages) else ''}, "
          f"queue {settings.max_queue}"
          f"{', API key required' if settings.api_key else ''})\n"
          f"[ming] web page: {url}/   ·   OpenAI API: {url}/v1   ·   Ctrl-C stops", file=sys.stderr, flush=True)
    if settings.log_requests:
        print("[ming] --log-requests: patient messages and answers are written to the log", file=sys.stderr)
    server = make_server(app, settings.host, settings.port)
    server.run()
    engine.close()
    if server.stop_signal is not None:
        print("[ming] stopped", file=sys.stderr)
    return 0
