"""Exact and near-duplicate removal, and decontamination against evaluation sets.

- exact: a 64-bit hash of the normalised conversation (NFKC, lower case, no whitespace or punctuation), kept in
  a Bloom filter of fixed size (pybloomfiltermmap3) or, when that package is missing, in a set;
- near: datasketch MinHash over character n-grams + datasketch LSH. `MinHashLSHBloom` (fixed memory, sized
  by the expected record count) when pybloomfiltermmap3 is installed, else the in-memory `MinHashLSH`;
- eval decontamination: every question / first patient turn / prompt of the eval files goes into an in-memory
  `MinHashLSH`; each user turn of a training record, each of its lines, and all its user turns joined are
  checked against it (Jaccard estimate verified on the candidates) and for exact normalised equality.
"""

from __future__ import annotations

import hashlib
import unicodedata
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ming.data.rawio import iter_rows
from ming.data.records import ErrorLog

_DROP_TABLE: dict[int, None] | None = None


def _drop_table() -> dict[int, None]:
    """Code points (BMP) of punctuation, symbols, separators and control characters, built once on first use."""
    global _DROP_TABLE
    if _DROP_TABLE is None:
        _DROP_TABLE = {cp: None for cp in range(0x10000)
                       if unicodedata.category(chr(cp))[0] in "PSZC" and not 0xD800 <= cp <= 0xDFFF}
    return _DROP_TABLE


def norm_for_hash(text: str) -> str:
    """NFKC, lower case, whitespace and punctuation/symbols removed (the normalisation of shared/data's README)."""
    return unicodedata.normalize("NFKC", text).lower().translate(_drop_table())


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def record_text(rec: dict) -> str:
    """The text that identifies a conversation: every turn, with its role."""
    return "\n".join(f"{m['role'][0]}:{m['content']}" for m in rec["messages"])


def record_hash(rec: dict) -> int:
    return hash64("\n".join(m["role"][0] + norm_for_hash(m["content"]) for m in rec["messages"]))


def shingle_hashes(norm_text: str, n: int) -> np.ndarray:
    """32-bit hashes of every character n-gram of an already normalised text (vectorised, deterministic)."""
    cp = np.frombuffer(norm_text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cp) < n:
        cp = np.concatenate([cp, np.zeros(n - len(cp), dtype=np.uint64)])
    m = len(cp) - n + 1
    h = np.zeros(m, dtype=np.uint64)
    for j in range(n):
        h = h * np.uint64(1000003) + cp[j:j + m]
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return h & np.uint64(0xFFFFFFFF)


def _identity(x):
    return x


class MinHasher:
    """datasketch MinHash with fixed permutations (built once) over character n-grams."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        from datasketch import MinHash

        self._MinHash = MinHash
        proto = MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity)
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self._perms, self._scheme = proto.permutations, proto.scheme
        self._reusable = None

    def __call__(self, text: str, normalized: bool = False, keep: bool = False):
        """MinHash of a text. The returned object is reused by the next call unless `keep` (then a copy)."""
        norm = text if normalized else norm_for_hash(text)
        mh = self._reusable
        if mh is None:
            mh = self._reusable = self._MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=_identity,
                                                permutations=self._perms, scheme=self._scheme)
        else:
            mh.clear()
        mh.update_batch(shingle_hashes(norm, self.ngram).tolist())
        return mh.copy() if keep else mh


def bloom_available() -> bool:
    try:
        import pybloomfilter  # noqa: F401
    except ImportError:
        return False
    return True


class ExactDeduper:
    """Seen-before test on 64-bit hashes: a fixed-size Bloom filter (false-positive rate `fp`) or a set."""

    def __init__(self, capacity: int = 2_000_000, fp: float = 1e-7, backend: str = "auto"):
        self.backend = backend if backend != "auto" else ("bloom" if bloom_available() else "set")
        if self.backend == "bloom":
            import pybloomfilter

            self._bloom = pybloomfilter.BloomFilter(max(capacity, 1000), fp)
        else:
            self._set: set[int] = set()
        self.capacity, self.fp = capacity, fp

    def seen_or_add(self, h: int) -> bool:
        if self.backend == "bloom":
            return bool(self._bloom.add(h))
        if h in self._set:
            return True
        self._set.add(h)
        return False


class NearDeduper:
    """Near-duplicate test: has a conversation with estimated Jaccard >= threshold been added before?"""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, capacity: int = 2_000_000, fp: float = 1e-4,
                 backend: str = "auto", weights: tuple[float, float] = (0.4, 0.6)):
        """`weights`: relative cost of false positives vs false negatives when datasketch picks the bands
        (missing a duplicate is the commoner error for short texts, so it weighs a little more)."""
        from datasketch import MinHashLSH

        self.backend = backend if backend != "auto" else ("bloom" if bloom_available() else "memory")
        self.threshold = threshold
        if self.backend == "bloom":
            from datasketch import MinHashLSHBloom

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "index will not be persisted": intended
                self._lsh = MinHashLSHBloom(threshold=threshold, num_perm=num_perm, n=max(capacity, 1000), fp=fp,
                                            weights=weights)
        else:
            self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
            self._n = 0

    def is_dup_or_add(self, mh) -> bool:
        if self.backend == "bloom":
            if self._lsh.query(mh):
                return True
            self._lsh.insert(mh)
            return False
        if self._lsh.query(mh):
            return True
        self._lsh.insert(str(self._n), mh)
        self._n += 1
        return False


# ---------------------------------------------------------------- eval decontamination

def eval_texts(row: dict) -> list[str]:
    """The prompt-side texts of an eval item, whatever its schema (MCQ, QA, dialogue, case, safety, instruction,
    our records / ShareGPT)."""
    out: list[str] = []
    q = row.get("question")
    if isinstance(q, str) and q.strip():
        out.append(q)
        opts = row.get("options")
        if isinstance(opts, dict) and opts:
            out.append(q + "\n" + "\n".join(f"{k}. {v}" for k, v in opts.items()))
    turns = row.get("turns")
    if isinstance(turns, list):
        first = next((t.get("text") for t in turns if isinstance(t, dict) and t.get("role") == "patient"), None)
        if isinstance(first, str) and first.strip():
            out.append(first)
    for key in ("prompt", "case", "query"):
        if isinstance(row.get(key), str) and row[key].strip():
            out.append(row[key])
    if isinstance(row.get("instruction"), str) and row["instruction"].strip():
        inp = row.get("input") or ""
        out.append(row["instruction"] + ("\n" + inp if isinstance(inp, str) and inp.strip() else ""))
    msgs = row.get("messages") or row.get("conversations")
    if isinstance(msgs, list):
        for m in msgs:
            if isinstance(m, dict) and (m.get("role") == "user" or m.get("from") in ("human", "user")):
                text = m.get("content", m.get("value"))
                if isinstance(text, str) and text.strip():
                    out.append(text)
                break
    return out


def _query_texts(rec: dict, min_chars: int) -> list[str]:
    users = [m["content"] for m in rec["messages"] if m["role"] == "user"]
    texts = list(users)
    for u in users:
        texts += [ln for ln in u.split("\n") if len(ln) >= min_chars and ln != u]
    if len(users) > 1:
        texts.append("\n".join(users))
    return texts


class EvalIndex:
    """Eval questions in an in-memory LSH (they are few); `match(rec)` names the eval item a training record
    near-duplicates, or returns None."""

    def __init__(self, hasher: MinHasher, threshold: float = 0.6, min_chars: int = 8):
        from datasketch import MinHashLSH

        self.hasher, self.threshold, self.min_chars = hasher, threshold, min_chars
        self._lsh = MinHashLSH(threshold=threshold, num_perm=hasher.num_perm)
        self._mh: dict[str, object] = {}
        self._exact: dict[int, str] = {}
        self.n_items = 0
        self.files: list[str] = []

    def add(self, key: str, text: str) -> None:
        norm = norm_for_hash(text)
        if not norm:
            return
        self._exact.setdefault(hash64(norm), key)
        if len(norm) < self.min_chars:
            return  # too short for a meaningful n-gram similarity: exact match only
        k = f"{key}#{len(self._mh)}"
        mh = self.hasher(norm, normalized=True, keep=True)
        self._lsh.insert(k, mh)
        self._mh[k] = mh

    def add_files(self, paths: Iterable[str | Path], errors=None) -> None:
        errors = errors if errors is not None else ErrorLog()
        for path in paths:
            self.files.append(str(path))
            for line_no, row in iter_rows(path, errors=errors):
                key = str(row.get("id") or f"{Path(path).name}:{line_no}")
                texts = eval_texts(row)
                for t in texts:
                    self.add(key, t)
                self.n_items += 1 if texts else 0

    def match_text(self, text: str) -> str | None:
        norm = norm_for_hash(text)
        if not norm:
            return None
        hit = self._exact.get(hash64(norm))
        if hit is not None:
            return hit
        if len(norm) < self.min_chars:
            return None
        mh = self.hasher(norm, normalized=True)
        for k in self._lsh.query(mh):
            if mh.jaccard(self._mh[k]) >= self.threshold:
                return k.split("#", 1)[0]
        return None

    def match(self, rec: dict) -> str | None:
        for text in _query_texts(rec, self.min_chars):
            hit = self.match_text(text)
            if hit:
                return hit
        return None


def find_eval_files(data_dir: str | Path, patterns: Iterable[str] = ("dev*.jsonl", "test_public*.jsonl")) -> list[Path]:
    """Every dev / test_public file under the data folder (one level of dataset folders)."""
    root = Path(data_dir)
    files: set[Path] = set()
    for pat in patterns:
        files.update(root.glob(pat))
        files.update(root.glob(f"*/{pat}"))
    return sorted(files)
