"""A character n-gram classifier: the triage step that reads every message the rules are silent on, at no model cost.

    judge = NgramTriage()                                  # the packaged classifier (tables/triage_ngram.json)
    v = judge.score("我爸突然说不出话，一边手抬不起来", context=["刚才还好好的"])
    v.p_yes, v.fired                                       # p(emergency); at or above the packaged threshold
    judge.assess(["肚子疼两天了", "右下腹，按着更疼，发烧"]).fired

Features: TF-IDF of the message's character 1-3-grams (the newest message with up to CONTEXT_TURNS earlier user
messages, one per line; lower-cased, runs of white space read as one space; term frequency 1 + ln tf; smoothed
idf; the vector L2-normalised) -- the features scikit-learn's `TfidfVectorizer(analyzer="char",
ngram_range=(1, 3), sublinear_tf=True)` computes, written out here so that scoring needs no library. The
classifier is an L2 logistic regression (`fit`: Newton-CG in numpy, the intercept unpenalised). Its vocabulary,
idf, weights, bias and threshold are package data, trained by `python bench/triage_ngram.py --save` on the
labelled sets in bench/data/triage/ plus 4,000 unlabelled real patient questions as negatives (the shared data's
huatuo26m_qa and toyhom_qa train splits, those no rule flags: outpatients' vivid everyday complaints); their sizes and
the threshold's rule are recorded in the file.

Why n-grams: Chinese symptom words are 2-3 characters, and a linear model over them learns which combinations
make an emergency (突然 + 说不出话, 胸口 + 压着 + 出汗) from every labelled message, where a rule needs a writer
to have thought of the phrase. Measured in docs/triage.md against the rules and the hidden-state probe
(ming.safety.probe_triage): leave-presentation-out and each set held out in turn (the cross-writer figure).

Scoring is pure Python: ~0.1 ms a message; a text shorter than MIN_CHARS, or with more Latin letters than Chinese
characters (English, pinyin), is not scored (p 0: the rules read it); it
reads the newest MAX_CHARS characters, a text longer than WINDOW
in half-overlapping windows (its p is the highest window's: a short emergency after a long preamble still counts). The policy asks it only where
no rule fired and the message is not a health-education question (ming.safety.policy.asks_model).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ming.errors import MingError
from ming.safety.model_triage import CONTEXT_TURNS, Verdict, clip, read_step_file, write_step_file
from ming.safety.triage import mostly_chinese

if TYPE_CHECKING:
    import numpy as np  # imported where used: `ming chat --help` stays free of numpy

NGRAM_FILE = Path(__file__).parent / "tables" / "triage_ngram.json"
FORMAT = "ming-triage-ngram/1"
NGRAMS = (1, 3)  # character n-gram lengths
MIN_DF = 2  # a gram enters the vocabulary when at least this many training messages hold it
C = 30.0  # inverse L2 strength (scikit-learn's C), chosen by leave-presentation-out AUC (bench/triage_ngram.py)
MAX_CHARS = 1000  # the newest characters read
WINDOW = 80  # a longer text is also read in windows of whole sentences up to this many characters, and its p is the
# highest: the labelled messages are 24 characters (median) to 136 with their context, and a long preamble would
# otherwise dilute a short emergency in the normalised vector (p 0.05 for a stroke after 105 characters of chronic
# complaints; 0.99 read alone)
_SENTENCE = re.compile(r"(?<=[。！？!?；;\n])")
MIN_CHARS = 7  # a text with fewer letters / ideographs / digits is not scored (p 0): no labelled emergency is
# shorter than 7 and none of its messages shorter than 5, and on such texts the classifier's p is noise (我发烧了
# 0.94, 我胸口疼 0.86, 我感冒了流鼻涕 0.02); the rules read them (喘不上气, 呕血, 想死, 晕倒 all fire there)
_SPACE = re.compile(r"\s\s+")
_NOT_CHAR = re.compile(r"[\W_]")


def text_of(text: str, context: Sequence[str] = ()) -> str:
    """The text the classifier reads: the earlier user messages, then the newest, one per line."""
    return "\n".join(list(context) + [text])


def read_text(text: str, context: Sequence[str] = ()) -> str:
    """`text_of` the stripped messages (empty earlier ones left out), its newest MAX_CHARS characters."""
    return clip(text_of(text.strip(), [c.strip() for c in context if c.strip()]), MAX_CHARS)


def long_enough(text: str) -> bool:
    """Whether a text has the MIN_CHARS letters / ideographs / digits the classifier is asked about."""
    return len(_NOT_CHAR.sub("", text)) >= MIN_CHARS


def readable(text: str) -> bool:
    """Whether the classifier is asked about a text: long enough, and mostly Chinese (`triage.mostly_chinese`). It
    learned from Chinese messages (2 of 3,286 labelled ones are mostly Latin letters): on English its p is noise
    (0.9 and above for "I have had a mild cough for three days"), so such a text is left to the rules, which read
    English red flags through their `english` table, and in chat and serve to the model's yes/no (`Unreadable`)."""
    return long_enough(text) and mostly_chinese(text)


def grams(text: str, n: tuple[int, int] = NGRAMS) -> Counter:
    """The character n-grams of a text and their counts (lower-cased, white-space runs read as one space)."""
    s = _SPACE.sub(" ", text.lower())
    out: Counter = Counter()
    for k in range(n[0], n[1] + 1):
        out.update(s[i:i + k] for i in range(len(s) - k + 1))
    return out


def vectorize(texts: Sequence[str], vocab: dict[str, int], idf: Sequence[float]) -> list[dict[int, float]]:
    """Each text's L2-normalised TF-IDF vector over the vocabulary, as {feature index: value}."""
    rows = []
    for t in texts:
        v = {vocab[g]: (1.0 + math.log(c)) * idf[vocab[g]] for g, c in grams(t).items() if g in vocab}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        rows.append({j: x / norm for j, x in v.items()})
    return rows


def vocabulary(texts: Sequence[str], min_df: int = MIN_DF) -> tuple[dict[str, int], list[float]]:
    """The grams held by at least `min_df` texts (sorted, so a vocabulary is the same wherever it is built) and
    their smoothed idf, ln((1 + n) / (1 + df)) + 1."""
    df: Counter = Counter()
    for t in texts:
        df.update(grams(t).keys())
    keep = sorted(g for g, c in df.items() if c >= min_df)
    n = len(texts)
    return {g: i for i, g in enumerate(keep)}, [math.log((1 + n) / (1 + df[g])) + 1.0 for g in keep]


def fit(rows: list[dict[int, float]], y: Sequence[int], dims: int, c: float = C, tol: float = 1e-6,
        max_iter: int = 50) -> tuple[np.ndarray, float]:
    """L2 logistic regression, min c * sum(log loss) + |w|^2 / 2 with the bias unpenalised (scikit-learn's
    LogisticRegression(C=c)), by Newton's method with conjugate-gradient steps on the sparse rows."""
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    if len(rows) != len(y) or len(set(y.tolist())) != 2:
        raise MingError(f"the n-gram classifier needs one label per message and both classes; got {len(rows)} "
                        f"messages and labels {sorted(set(y.tolist()))}")
    row = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    col = np.fromiter((j for r in rows for j in r), dtype=np.int64, count=len(row))
    val = np.fromiter((x for r in rows for x in r.values()), dtype=np.float64, count=len(row))
    n = len(rows)

    def A(v):  # rows . v
        return np.bincount(row, weights=val * v[col], minlength=n)

    def At(u):  # rows^T . u
        return np.bincount(col, weights=val * u[row], minlength=dims)

    def loss(w, b):
        z = A(w) + b
        return c * float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * float(w @ w)

    w, b = np.zeros(dims), 0.0
    f, g0 = loss(w, b), None
    for _ in range(max_iter):
        z = A(w) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        g_w, g_b = c * At(p - y) + w, c * float(np.sum(p - y))
        gnorm = math.sqrt(float(g_w @ g_w) + g_b * g_b)
        g0 = g0 or gnorm
        if gnorm <= tol * g0:
            break
        d = c * p * (1 - p)

        def H(v_w, v_b):
            u = d * (A(v_w) + v_b)
            return At(u) + v_w, float(u.sum())

        # conjugate gradient on H s = -g
        s_w, s_b = np.zeros(dims), 0.0
        r_w, r_b = -g_w, -g_b
        q_w, q_b = r_w.copy(), r_b
        rr = float(r_w @ r_w) + r_b * r_b
        for _ in range(100):
            h_w, h_b = H(q_w, q_b)
            alpha = rr / (float(q_w @ h_w) + q_b * h_b)
            s_w, s_b = s_w + alpha * q_w, s_b + alpha * q_b
            r_w, r_b = r_w - alpha * h_w, r_b - alpha * h_b
            rr_new = float(r_w @ r_w) + r_b * r_b
            if math.sqrt(rr_new) < 0.1 * gnorm:
                break
            q_w, q_b = r_w + (rr_new / rr) * q_w, r_b + (rr_new / rr) * q_b
            rr = rr_new
        step, slope = 1.0, float(g_w @ s_w) + g_b * s_b
        while step > 1e-8:  # backtracking line search
            f_new = loss(w + step * s_w, b + step * s_b)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        w, b, f = w + step * s_w, b + step * s_b, f_new
    return w, b


def windows(text: str, size: int = WINDOW) -> list[str]:
    """The text, and when it is longer than `size`, each run of consecutive sentences that fits in `size`."""
    if len(text) <= size:
        return [text]
    parts: list[str] = []
    for s in (x for x in _SENTENCE.split(text) if x.strip()):
        parts += [s] if len(s) <= size else [s[i:i + size] for i in range(0, len(s) - size // 2, size // 2)]
    out = [text]
    for i in range(len(parts)):
        w = parts[i]
        for nxt in parts[i + 1:]:
            if len(w) + len(nxt) > size:
                break
            w += nxt
        out.append(w)
    return out


@dataclass
class NgramModel:
    """The classifier's numbers and where they came from (tables/triage_ngram.json)."""

    vocab: dict[str, int]
    idf: list[float]
    weights: list[float]
    bias: float
    threshold: float  # p at or above which the step escalates
    c: float = C
    provenance: dict = field(default_factory=dict)

    def p(self, text: str) -> float:
        """p(emergency) of a text: of the whole, and, when it is longer than WINDOW characters, the highest of its
        windows of consecutive whole sentences (a longer sentence in pieces of WINDOW, half overlapping)."""
        return max(self._p(w) for w in windows(text))

    def _p(self, text: str) -> float:
        (v,) = vectorize([text], self.vocab, self.idf)
        z = self.bias + sum(x * self.weights[j] for j, x in v.items())
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))

    def p_many(self, texts: Sequence[str]) -> list[float]:
        return [self.p(t) for t in texts]

    @classmethod
    def train(cls, texts: Sequence[str], y: Sequence[int], c: float = C, min_df: int = MIN_DF,
              threshold: float = 0.5, provenance: dict | None = None,
              vocab_texts: Sequence[str] | None = None) -> "NgramModel":
        """`vocab_texts` (default `texts`): the texts the vocabulary and idf come from (the labelled ones, so that
        unlabelled negatives add weight, not grams)."""
        vocab, idf = vocabulary(texts if vocab_texts is None else vocab_texts, min_df)
        w, b = fit(vectorize(texts, vocab, idf), y, len(vocab), c)
        return cls(vocab, idf, [float(x) for x in w], float(b), threshold, c, dict(provenance or {}))

    @classmethod
    def load(cls, path: str | Path = NGRAM_FILE) -> "NgramModel":
        d = read_step_file(path, FORMAT, "n-gram triage classifier", "bench/triage_ngram.py")
        try:
            feats = d["features"]
            vocab = {g: i for i, g in enumerate(feats)}
            idf = [float(v[0]) for v in feats.values()]
            w = [float(v[1]) for v in feats.values()]
            m = cls(vocab, idf, w, float(d["bias"]), float(d["threshold"]), float(d.get("C", C)),
                    dict(d.get("provenance") or {}))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise MingError(f"the n-gram triage classifier {path} is incomplete ({exc!r}); retrain it with "
                            "`python bench/triage_ngram.py --save PATH`") from None
        if not all(math.isfinite(x) for x in w + idf + [m.bias]) or not 0.0 <= m.threshold <= 1.0:
            raise MingError(f"the n-gram triage classifier {path} has bad numbers (threshold {m.threshold})")
        return m

    def save(self, path: str | Path) -> Path:
        feats = {g: [float(f"{self.idf[i]:.6g}"), float(f"{self.weights[i]:.6g}")] for g, i in self.vocab.items()}
        d = {"format": FORMAT, "ngrams": list(NGRAMS), "C": self.c, "threshold": round(self.threshold, 6),
             "bias": float(f"{self.bias:.8g}"), "provenance": self.provenance, "features": feats}
        return write_step_file(path, d, compact=True)


class NgramTriage:
    """The classifier's verdict on a message (plus earlier user messages): the same interface as ModelTriage."""

    step = "ngram"

    def __init__(self, model: NgramModel | None = None, threshold: float | None = None):
        self.model = model or NgramModel.load()
        self.threshold = self.model.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise MingError(f"the n-gram step's threshold is a probability in [0, 1], got {self.threshold}")

    def score(self, text: str, context: Sequence[str] = ()) -> Verdict:
        if not isinstance(text, str) or any(not isinstance(c, str) for c in context):
            raise MingError("the n-gram triage step takes a message string and a list of earlier message strings")
        if not text.strip():
            raise MingError("the n-gram triage step got an empty message; there is nothing to judge")
        t0 = time.perf_counter()
        s = read_text(text, context)
        p = self.model.p(s) if readable(s) else 0.0
        return Verdict(p, math.log(max(p, 1e-300)), math.log(max(1.0 - p, 1e-300)), time.perf_counter() - t0,
                       len(s), step=self.step)

    def assess(self, user_turns: Sequence[str]) -> Verdict:
        """The verdict on the newest user message with up to CONTEXT_TURNS earlier ones, at this threshold."""
        turns = list(user_turns)
        if not turns:
            raise MingError("the n-gram triage step got a conversation without a user message")
        return dataclasses.replace(self.score(turns[-1], turns[-1 - CONTEXT_TURNS:-1]), threshold=self.threshold)


class Unreadable:
    """Another step asked only about the messages the n-gram step does not read because they are mostly Latin
    letters (English; `mostly_chinese`); on every other message it passes (None). Chat and serve put the model's
    yes/no (ming.safety.model_triage) here by default, so that an English emergency the rules miss is still read
    by a model that reads English, while Chinese messages keep the n-gram step alone."""

    def __init__(self, judge: Any):
        self.judge = judge
        self.step = getattr(judge, "step", "model")

    def assess(self, user_turns: Sequence[str]) -> Any:
        turns = list(user_turns)
        if not turns:
            raise MingError("the triage step got a conversation without a user message")
        s = read_text(turns[-1], turns[-1 - CONTEXT_TURNS:-1])
        return self.judge.assess(turns) if long_enough(s) and not mostly_chinese(s) else None


def resolve(flag: bool | None, safety: str = "on") -> bool:
    """Whether chat / serve run the n-gram step: --triage-ngram / --no-triage-ngram, else MING_TRIAGE_NGRAM
    (on by default)."""
    from ming import envs

    if safety == "off":
        return False
    if flag is not None:
        return flag
    env = envs.triage_ngram()
    if env not in ("on", "none"):
        raise MingError(f"MING_TRIAGE_NGRAM={env!r}: use on or none")
    return env == "on"
