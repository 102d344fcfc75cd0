"""Choosing the next token from a row of logits: one set of rules for every backend that runs ming's own
token loop (transformers and llama.cpp), written in numpy with the rules of transformers' logits processors
(repetition penalty as CTRL / HF, then temperature, top-k, top-p), so a setting means the same thing on
every backend and a seed gives the same answer twice."""

from __future__ import annotations

from typing import Any, Sequence

from ming.engine.base import GenerationConfig

# numpy is imported inside the functions: `ming --help` imports the engine package and stays light


def new_rng(gen: GenerationConfig) -> Any:
    """The random stream of one sequence (numpy Generator): None when decoding is greedy; seeded by gen.seed
    (None = fresh entropy)."""
    import numpy as np

    return None if gen.greedy else np.random.default_rng(gen.seed)


def pick(logits, gen: GenerationConfig, history: Sequence[int], rng: Any) -> int:
    """The next token id. `history` (prompt + generated ids) is only read for the repetition penalty;
    `rng` None = greedy."""
    import numpy as np

    if gen.repetition_penalty == 1.0 and rng is None:
        return int(np.asarray(logits).argmax())
    x = np.array(logits, dtype=np.float32, copy=True)
    if gen.repetition_penalty != 1.0 and len(history):
        idx = np.unique(np.asarray(history, dtype=np.int64))
        v = x[idx]
        x[idx] = np.where(v > 0, v / gen.repetition_penalty, v * gen.repetition_penalty)
    if rng is None:
        return int(x.argmax())
    x = x / gen.temperature
    if 0 < gen.top_k < x.size:
        kth = np.partition(x, -gen.top_k)[-gen.top_k]
        x[x < kth] = -np.inf
    if gen.top_p < 1.0:
        kept = _nucleus_head(x, gen.top_p)
        if kept is not None:
            return _draw(x, kept, rng)
        order = np.argsort(x)  # ascending, as HF's TopPLogitsWarper
        probs = np.exp(x[order] - x[order[-1]])
        probs /= probs.sum()
        remove = np.cumsum(probs) <= 1 - gen.top_p
        remove[-1] = False  # keep at least one
        x[order[remove]] = -np.inf
    p = np.exp(x - x.max()).astype(np.float64)
    p /= p.sum()
    return int(rng.choice(p.size, p=p))


HEAD = 512  # candidates looked at first for top-p; the whole vocabulary is sorted only when they are not enough


def _nucleus_head(x, top_p: float):
    """The token ids top-p keeps (ascending), found among the HEAD largest logits without sorting the whole
    vocabulary (a 152k sort is ~2 ms, a large share of a batched decode step); None when the nucleus may reach
    past them (a flat distribution), and the caller sorts everything. The rule is the one below it: drop the
    tokens whose ascending cumulative probability is <= 1 - top_p, keep at least one."""
    import numpy as np

    if x.size <= HEAD:
        return None
    head = np.argpartition(x, -HEAD)[-HEAD:]
    head = head[np.argsort(x[head], kind="stable")]  # ascending, as the full sort
    m = x[head[-1]]
    e = np.exp(x - m, dtype=np.float32)
    total = float(e.sum(dtype=np.float64))
    top = e[head].astype(np.float64) / total
    below = 1.0 - float(top.sum())  # the mass of every token outside the head
    if below > 1 - top_p:
        return None  # the cut falls outside the head
    remove = below + np.cumsum(top) <= 1 - top_p
    remove[-1] = False
    return np.sort(head[~remove])


def _draw(x, kept, rng) -> int:
    """`rng.choice` over the kept tokens with probabilities softmax(x) renormalised; the same draw (one uniform
    double against the cumulative sum in token-id order) as over the whole masked vocabulary."""
    import numpy as np

    v = x[kept].astype(np.float64)
    p = np.exp(v - v.max())
    cdf = np.cumsum(p / p.sum())
    cdf /= cdf[-1]
    return int(kept[int(np.searchsorted(cdf, rng.random(), side="right"))])


def log_softmax(row):
    """log-probabilities of one row of logits (numpy float64)."""
    import numpy as np

    x = np.asarray(row, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())
