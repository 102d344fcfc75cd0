"""One streaming generation interface (`Engine`), several backends.

    engine = create_engine(options)                 # ModelOptions from ming.config
    for chunk in engine.chat_stream(messages, gen): print(chunk.text, end="")
"""

from ming.engine.base import Chunk, Completion, Engine, GenerationConfig
from ming.engine.select import create

__all__ = ["Chunk", "Completion", "Engine", "GenerationConfig", "create_engine"]


def create_engine(opts, *, need_beam: bool = False, max_batch: int = 1, batching: dict | None = None,
                  scoring_sequence: bool = False) -> Engine:
    """Load the model described by `opts` (ming.config.ModelOptions) on the right backend. `max_batch` > 1
    asks for a batching engine (continuous batching on llama.cpp, vLLM's own on GPUs) for servers; `batching`
    holds the llama.cpp runner's settings (kv_cells, kv_unified, prefill_chunk). `scoring_sequence`: a
    one-sequence llama.cpp engine keeps a second KV sequence for log-likelihood scoring (the model triage step),
    so scoring leaves the conversation's cached tokens in place (a batching engine scores beside its batch)."""

    return create(opts, need_beam=need_beam, max_batch=max_batch, batching=batching,
                  scoring_sequence=scoring_sequence)
