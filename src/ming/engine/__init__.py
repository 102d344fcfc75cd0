"""One streaming generation interface (`Engine`), several backends.

    engine = create_engine(options)                 # ModelOptions from ming.config
    for chunk in engine.chat_stream(messages, gen): print(chunk.text, end="")
"""

from ming.engine.base import Chunk, Completion, Engine, GenerationConfig
from ming.engine.select import create

__all__ = ["Chunk", "Completion", "Engine", "GenerationConfig", "create_engine"]


def create_engine(opts, *, need_beam: bool = False) -> Engine:
    """Load the model described by `opts` (ming.config.ModelOptions) on the right backend."""

    return create(opts, need_beam=need_beam)
