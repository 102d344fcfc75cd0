"""Scores and their uncertainty: accuracy with a 95% Wilson interval (per group too), ROUGE-L and
BLEU-4 on Chinese characters, and paired significance tests for comparing two runs on the same items
(exact McNemar for right/wrong, paired bootstrap for graded scores)."""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Iterable, Sequence

Z95 = 1.959963984540054


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (well-behaved at 0 % and 100 %)."""
    if n <= 0:
        return (0.0, 0.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo, 1.0 if k == n else hi)


def bootstrap_ci(values: Sequence[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean."""
    n = len(values)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return (means[int(0.025 * rounds)], means[min(rounds - 1, int(0.975 * rounds))])


def accuracy(correct: Sequence[bool]) -> dict:
    n, k = len(correct), sum(bool(c) for c in correct)
    lo, hi = wilson_ci(k, n)
    return {"n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": [lo, hi]}


def accuracy_by(rows: Iterable[dict], key: str) -> dict[str, dict]:
    """Accuracy per value of rows[key] (rows without the key are grouped under "-")."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        groups[str(r.get(key) or "-")].append(bool(r.get("correct")))
    return {g: accuracy(v) for g, v in sorted(groups.items())}


def mean_ci(values: Sequence[float]) -> dict:
    n = len(values)
    m = sum(values) / n if n else 0.0
    lo, hi = bootstrap_ci(values)
    return {"n": n, "mean": m, "ci95": [lo, hi]}


# -- text overlap on characters -----------------------------------------------------------------
_DROP = re.compile(r"[\s\u3000]+")


def chars(text: str) -> list[str]:
    """Characters as tokens (the usual way to score Chinese without a word segmenter): NFKC,
    whitespace removed, ASCII words kept whole so English is scored per word."""
    t = _DROP.sub(" ", unicodedata.normalize("NFKC", text or "")).strip().lower()
    return re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: str, ref: str) -> dict:
    """ROUGE-L (LCS) precision / recall / F1 on characters."""
    h, r = chars(hyp), chars(ref)
    lcs = _lcs(h, r)
    if lcs == 0:
        return {"p": 0.0, "r": 0.0, "f": 0.0}
    p, rc = lcs / len(h), lcs / len(r)
    return {"p": p, "r": rc, "f": 2 * p * rc / (p + rc)}


def bleu(hyp: str, ref: str, max_n: int = 4) -> float:
    """Sentence BLEU-4 on characters with add-one smoothing for n > 1 (Lin & Och 2004) and the
    brevity penalty; 0..1."""
    h, r = chars(hyp), chars(ref)
    if not h or not r:
        return 0.0
    logs = 0.0
    for n in range(1, max_n + 1):
        hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
        rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
        match = sum(min(c, rc[g]) for g, c in hc.items())
        total = max(1, len(h) - n + 1)
        if n == 1:
            if match == 0:
                return 0.0
            logs += math.log(match / total)
        else:
            logs += math.log((match + 1) / (total + 1))
    bp = 1.0 if len(h) > len(r) else math.exp(1 - len(r) / len(h))
    return bp * math.exp(logs / max_n)


# -- paired significance ------------------------------------------------------------------------
def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact (binomial) McNemar test on paired right/wrong outcomes: two-sided p-value."""
    if len(a) != len(b):
        raise ValueError("mcnemar needs paired outcomes of equal length")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return {"only_a": 0, "only_b": 0, "p": 1.0}
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return {"only_a": only_a, "only_b": only_b, "p": min(1.0, 2 * tail)}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], rounds: int = 2000, seed: int = 0) -> dict:
    """Two-sided paired bootstrap test of mean(b) - mean(a) (resampling items)."""
    if len(a) != len(b):
        raise ValueError("paired_bootstrap needs paired scores of equal length")
    n = len(a)
    if n == 0:
        return {"delta": 0.0, "ci95": [0.0, 0.0], "p": 1.0}
    d = [y - x for x, y in zip(a, b)]
    delta = sum(d) / n
    rng = random.Random(seed)
    boots = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    # p: how often the resampled difference lands on the other side of zero (two-sided)
    if delta > 0:
        p = 2 * sum(1 for x in boots if x <= 0) / rounds
    elif delta < 0:
        p = 2 * sum(1 for x in boots if x >= 0) / rounds
    else:
        p = 1.0
    return {"delta": delta, "ci95": [boots[int(0.025 * rounds)], boots[min(rounds - 1, int(0.975 * rounds))]],
            "p": min(1.0, p)}
