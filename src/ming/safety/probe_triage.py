"""A linear probe on the embedded 0.5B's hidden state: the triage step that reads what a model makes of the
whole message, where the rules only match phrases.

    judge = ProbeTriage()                         # the packaged probe (tables/triage_probe.json) on the 0.5B
    v = judge.score("我爸突然说不出话，一边手抬不起来", context=["刚才还好好的"])
    v.p_yes, v.seconds                            # p(emergency) of the logistic probe; wall time
    judge.assess(["肚子疼两天了", "右下腹，按着更疼，发烧"]).fired

Features: the last token's hidden state (llama.cpp embedding mode, pooling LAST; 896 numbers) of the embedded
0.5B over `wrap(message)`, a ChatML user turn holding the earlier user messages and the newest one, one per line,
then the assistant header. The text goes through `Llama.embed`, which tokenizes the ChatML markers as text:
the probe was trained on exactly that, so it is kept, whatever model answers the patient. The probe itself is
an L2 logistic regression (`fit`, numpy) whose 896 weights and bias are package data, trained by
`bench/triage_probe.py --save` on the labelled sets in bench/data/triage/ (their sizes, the model file and the
threshold's rule are recorded in the file). Measured across writers in docs/triage.md: leave-one-set-out,
rules OR probe recall 0.987 at FPR 0.039 over ten sets; leave-presentation-out 0.977 at 0.051.

The 0.5B is loaded in a context of its own (+0.7-0.8 GB resident, 1 s to load; bench/triage_probe.py --latency);
one message is one prefill, ~0.7 s on 2 CPU cores for a typical message (it reads at most the newest
MAX_CHARS characters). The policy asks it only where no rule fired
(ming.safety.policy.asks_model).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ming.errors import MingError
from ming.safety.model_triage import CONTEXT_TURNS, Verdict, clip, read_step_file, write_step_file

if TYPE_CHECKING:
    import numpy as np  # imported where used: `ming chat --help` stays free of numpy

PROBE_FILE = Path(__file__).parent / "tables" / "triage_probe.json"
FORMAT = "ming-triage-probe/1"
MODEL = "0.5b"  # the embedded model whose hidden state the packaged probe reads
N_CTX = 512  # tokens the embedding context holds (MAX_CHARS of text is at most ~300)
MAX_CHARS = 200  # the probe reads the newest 200 characters of the message and its context: the messages it was
# trained on are 24 characters (median) to 136 (the longest), and a prefill of 200 is ~2 s here; the rules read it all


def wrap(text: str, context: Sequence[str] = ()) -> str:
    """The text whose last token's hidden state is the feature vector (training and runtime alike)."""
    body = "\n".join(list(context) + [text])
    return f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"


def fit(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression on standardised features (Newton's method), returned as raw-feature
    weights and bias: p = sigmoid(X @ w + b). The penalty is on the standardised weights, not the bias."""
    import numpy as np

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y) or len(set(y.tolist())) != 2:
        raise MingError(f"the probe needs a 2-D feature matrix and labels of both classes; got {X.shape} and "
                        f"{sorted(set(y.tolist()))}")
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    w = np.zeros(Z.shape[1])
    R = lam * np.eye(Z.shape[1])
    R[-1, -1] = 0.0
    for _ in range(30):
        p = 1 / (1 + np.exp(-np.clip(Z @ w, -40, 40)))
        step = np.linalg.solve((Z * (p * (1 - p))[:, None]).T @ Z + R, Z.T @ (p - y) + R @ w)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    raw = w[:-1] / sd
    return raw, float(w[-1] - raw @ mu)


def predict(model: tuple[np.ndarray, float], X: np.ndarray) -> np.ndarray:
    import numpy as np

    w, b = model
    return 1 / (1 + np.exp(-np.clip(np.asarray(X, dtype=np.float64) @ w + b, -40, 40)))


@dataclass
class Probe:
    """The probe's numbers and where they came from (tables/triage_probe.json)."""

    weights: np.ndarray
    bias: float
    threshold: float  # p at or above which the step escalates
    model_file: str  # the GGUF file name the features were taken from
    model_bytes: int
    lam: float = 30.0
    provenance: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return int(self.weights.shape[0])

    def p(self, x: np.ndarray) -> float:
        import numpy as np

        return float(predict((self.weights, self.bias), np.asarray(x).reshape(1, -1))[0])

    @classmethod
    def load(cls, path: str | Path = PROBE_FILE) -> "Probe":
        import numpy as np

        d = read_step_file(path, FORMAT, "triage probe", "bench/triage_probe.py")
        try:
            w = np.asarray(d["weights"], dtype=np.float64)
            probe = cls(w, float(d["bias"]), float(d["threshold"]), str(d["model_file"]), int(d["model_bytes"]),
                        float(d.get("lam", 30.0)), dict(d.get("provenance") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise MingError(f"the triage probe {path} is incomplete ({exc!r}); retrain it with "
                            "`python bench/triage_probe.py --save PATH`") from None
        if w.ndim != 1 or not np.all(np.isfinite(w)) or not 0.0 <= probe.threshold <= 1.0:
            raise MingError(f"the triage probe {path} has bad numbers (weights {w.shape}, threshold {probe.threshold})")
        return probe

    def save(self, path: str | Path) -> Path:
        d = {"format": FORMAT, "model_file": self.model_file, "model_bytes": self.model_bytes, "dims": self.dims,
             "lam": self.lam, "threshold": round(self.threshold, 6), "bias": float(f"{self.bias:.8g}"),
             "provenance": self.provenance, "weights": [float(f"{x:.7g}") for x in self.weights]}
        return write_step_file(path, d)


def model_path() -> Path:
    """The GGUF the packaged probe reads (the embedded 0.5B, assembled from its installed parts if needed)."""
    from ming.models import embedded

    return embedded.ensure_gguf(embedded.get(MODEL), show_progress=False)


def available() -> tuple[bool, str]:
    """Whether the probe step can run here (llama.cpp and the embedded 0.5B installed), and why not."""
    from ming.engine.select import embedded_runnable

    return embedded_runnable(MODEL)


def env_setting() -> str:
    """MING_TRIAGE_PROBE, checked: auto (the default: off), on or none."""
    from ming import envs

    env = envs.triage_probe()
    if env not in ("auto", "on", "none"):
        raise MingError(f"MING_TRIAGE_PROBE={env!r}: use auto, on or none")
    return env


def resolve(flag: bool | None, safety: str = "on") -> tuple[bool, str]:
    """Whether chat / serve run the probe step: --triage-probe / --no-triage-probe, else MING_TRIAGE_PROBE
    (auto, the default: off -- the n-gram step reaches higher leave-out recall at no cost, docs/triage.md). The second
    value says why (for the start-up line)."""
    if safety == "off":
        return False, "--safety off"
    env = env_setting()
    if flag is False or (flag is None and env in ("none", "auto")):
        return False, ("--no-triage-probe" if flag is False else f"MING_TRIAGE_PROBE={env}" if env == "none"
                       else "off by default")
    ok, why = available()
    if not ok:
        raise MingError(f"the triage probe cannot run: {why}; or leave out --triage-probe")
    return ok, why


class Embedder:
    """The last token's hidden state of a GGUF model (llama.cpp embedding mode, pooling LAST)."""

    def __init__(self, path: str | Path, threads: int | None = None, n_ctx: int = N_CTX):
        import os

        import llama_cpp

        from ming.engine.llamacpp import _init_backend

        _init_backend(llama_cpp)  # ming's log filter (warnings only, less known harmless notes)
        self.path = Path(path)
        if not self.path.is_file():
            raise MingError(f"no model file at {self.path} for the triage probe")
        self.n_ctx = n_ctx
        threads = threads or max(1, min(os.cpu_count() or 1, 8))
        self.llm = llama_cpp.Llama(model_path=str(self.path), embedding=True,
                                   pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST, n_ctx=n_ctx, n_batch=n_ctx,
                                   n_ubatch=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.lock = threading.Lock()  # one llama.cpp context: one message at a time (ming serve's threads)

    def tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8")))

    def embed(self, text: str) -> np.ndarray:
        import numpy as np

        with self.lock:
            return np.asarray(self.llm.embed(text), dtype=np.float64).reshape(-1)


def _fit_tokens(emb: Embedder, text: str, context: list[str]) -> tuple[str, int]:
    """The wrapped message, its oldest part dropped until it fits the context (the newest text is kept)."""
    body = clip("\n".join(context + [text]), MAX_CHARS)
    while True:
        s = wrap(body)
        n = emb.tokens(s)
        if n <= emb.n_ctx:
            return s, n
        body = clip(body, max(1, len(body) * (emb.n_ctx - 32) // n - 8))


class ProbeTriage:
    """The probe's verdict on a message (plus earlier user messages): the same interface as ModelTriage."""

    step = "probe"

    def __init__(self, probe: Probe | None = None, embedder: Embedder | None = None, threshold: float | None = None,
                 threads: int | None = None):
        self.probe = probe or Probe.load()
        self.threshold = self.probe.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise MingError(f"the probe's threshold is a probability in [0, 1], got {self.threshold}")
        if embedder is None:
            path = model_path()
            if path.name != self.probe.model_file or path.stat().st_size != self.probe.model_bytes:
                raise MingError(f"the triage probe was trained on {self.probe.model_file} ({self.probe.model_bytes:,} "
                                f"bytes), not {path.name} ({path.stat().st_size:,}); retrain it with bench/triage_probe.py")
            embedder = Embedder(path, threads)
        self.embedder = embedder
        dims = int(self.embedder.llm.n_embd())
        if dims != self.probe.dims:
            raise MingError(f"the triage probe has {self.probe.dims} weights but {embedder.path.name} gives {dims} "
                            "features; the probe was trained on another model")

    def score(self, text: str, context: Sequence[str] = ()) -> Verdict:
        if not isinstance(text, str) or any(not isinstance(c, str) for c in context):
            raise MingError("the triage probe takes a message string and a list of earlier message strings")
        if not text.strip():
            raise MingError("the triage probe got an empty message; there is nothing to judge")
        t0 = time.perf_counter()
        s, n = _fit_tokens(self.embedder, text.strip(), [c.strip() for c in context if c.strip()])
        p = self.probe.p(self.embedder.embed(s))
        lp = math.log(max(p, 1e-300))
        return Verdict(p, lp, math.log(max(1.0 - p, 1e-300)), time.perf_counter() - t0, n, step=self.step)

    def assess(self, user_turns: Sequence[str]) -> Verdict:
        """The verdict on the newest user message with up to CONTEXT_TURNS earlier ones, at this threshold."""
        turns = list(user_turns)
        if not turns:
            raise MingError("the triage probe got a conversation without a user message")
        return dataclasses.replace(self.score(turns[-1], turns[-1 - CONTEXT_TURNS:-1]), threshold=self.threshold)


class FirstOf:
    """Several model steps asked in order until one fires (the probe, then the yes/no when both are on): the
    verdict returned is the first that fired, else the last one given. A step may pass a message over (None:
    `ngram_triage.Unreadable`)."""

    def __init__(self, judges: Sequence[Any]):
        if not judges:
            raise MingError("FirstOf needs at least one judge")
        self.judges = list(judges)

    def assess(self, user_turns: Sequence[str]) -> Verdict:
        v = None
        for j in self.judges:
            w = j.assess(user_turns)
            if w is None:
                continue
            v = w
            if v.fired:
                break
        return v
