"""Exact and near-duplicate removal, and decontamination against evaluation sets.

- exact: a 64-bit hash of the normalised conversation (NFKC, lower case, no whitespace or punctuation), kept in
  a Bloom filter of fixed size (`BloomFilter`, a numpy bit array) or, with `backend: set`, in a set;
- near: MinHash over character n-grams + LSH banding. The signatures are datasketch's own (same seed, same
  permutations, same scheme: bit-identical), computed for a whole batch of texts with one numpy operation
  instead of one datasketch object per text; the bands and rows are the ones datasketch picks for the threshold,
  the band keys the band sums of datasketch's `MinHashLSHBloom`. The (band, key) pairs go into one fixed-size
  Bloom filter (`backend: bloom`, the default) or one set (`memory`). Both decide a whole batch at once, with the
  result of deciding its records one at a time in order;
- eval decontamination: every question / first patient turn / prompt of the eval files goes into an in-memory
  banded index; each user turn of a training record, each of its lines, and all its user turns joined are
  checked against it (Jaccard estimate verified on the candidates) and for exact normalised equality.
"""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ming.data.errorlog import ErrorLog
from ming.data.rawio import iter_rows

_DROP_TABLE: dict[int, None] | None = None


def _drop_table() -> dict[int, None]:
    """Code points (BMP) of punctuation, symbols, separators and control characters, built once on first use."""
    global _DROP_TABLE
    if _DROP_TABLE is None:
        _DROP_TABLE = {cp: None for cp in range(0x10000)
                       if unicodedata.category(chr(cp))[0] in "PSZC" and not 0xD800 <= cp <= 0xDFFF}
    return _DROP_TABLE


_CHAR_MAP: tuple[np.ndarray, np.ndarray] | None = None
_SECONDS: frozenset[int] | None = None


def composing_seconds() -> frozenset[int]:
    """Code points that canonical composition can join to the character before them: the second character of
    every two-character canonical decomposition, and the Hangul vowel and final jamo (built once on first use)."""
    global _SECONDS
    if _SECONDS is None:
        seconds = {0x1161 + i for i in range(21)} | {0x11A8 + i for i in range(27)}  # Hangul V and T jamo
        for cp in range(0x110000):
            d = unicodedata.decomposition(chr(cp)) if not 0xD800 <= cp <= 0xDFFF else ""
            if d and not d.startswith("<"):
                parts = d.split()
                if len(parts) == 2:
                    seconds.add(int(parts[1], 16))
        _SECONDS = frozenset(seconds)
    return _SECONDS


def _char_map() -> tuple[np.ndarray, np.ndarray]:
    """Per BMP code point c: the code point that `norm_for_hash` turns it into when c stands among
    context-free characters (0: dropped), and whether c is such a character. Context-free: neither c nor its
    compatibility decomposition holds a combining mark or a character that composes with the one before it
    (Hangul vowels and finals, two-part vowels), c is not a capital sigma (whose lower case depends on the next
    letter), and c becomes at most one character. A text of such characters normalises character by character:
    NFKC of the text is the NFKC of its characters joined, and so are lower case and the drop."""
    global _CHAR_MAP
    if _CHAR_MAP is None:
        seconds = composing_seconds()
        drop = _drop_table()
        out = np.zeros(0x10000, dtype=np.uint32)
        ok = np.zeros(0x10000, dtype=bool)
        for cp in range(0x10000):
            if 0xD800 <= cp <= 0xDFFF or cp in seconds:
                continue
            c = chr(cp)
            n = unicodedata.normalize("NFKC", c)
            if "\u03a3" in n or any(unicodedata.combining(x) or ord(x) in seconds
                                    for x in unicodedata.normalize("NFKD", c)):
                continue
            r = n.lower().translate(drop)
            if len(r) > 1 or (r and ord(r) > 0xFFFF):
                continue
            out[cp] = ord(r) if r else 0
            ok[cp] = True
        _CHAR_MAP = (out, ok)
    return _CHAR_MAP


def prepare_tables() -> None:
    """Build the normalisation tables now (before worker processes fork, so that they share them)."""
    _char_map()


def norm_for_hash(text: str) -> str:
    """NFKC, lower case, whitespace and punctuation/symbols removed (the normalisation of shared/data's README)."""
    return norm_many([text])[0]


def norm_many(texts: Sequence[str]) -> list[str]:
    """`norm_for_hash` of many texts with one numpy lookup. Texts of context-free characters (nearly all
    Chinese and English text; see `_char_map`) are mapped character by character through a table; the others
    (combining marks, Hangul jamo, capital sigma, characters outside the BMP, ...) take the definition itself.
    Both give the same string (tests/test_data_dedup.py checks it for every BMP character in several contexts)."""
    return _norm_many(texts)[0]


def _norm_many(texts: Sequence[str]) -> tuple[list[str], list[bool]]:
    """(`norm_many(texts)`, per text whether it was mapped character by character: then the normalisation of a
    text made by joining such texts and context-free characters is the join of their normalisations)."""
    if not texts:
        return [], []
    out, ok = _char_map()
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    cp = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    if not cp.size:
        return ["" for _ in texts], [True] * len(texts)
    low = np.minimum(cp, 0xFFFF)
    bad = ~ok[low] | (cp > 0xFFFF)
    mapped = out[low]
    keep = mapped != 0
    nonempty = lens > 0
    starts = (np.cumsum(lens) - lens)[nonempty]
    new_lens = np.zeros(len(texts), dtype=np.int64)
    n_bad = np.zeros(len(texts), dtype=np.int64)
    new_lens[nonempty] = np.add.reduceat(keep, starts)
    n_bad[nonempty] = np.add.reduceat(bad, starts)
    joined = mapped[keep].tobytes().decode("utf-32-le")
    res, pos = [], 0
    n_bad_list = n_bad.tolist()
    for text, n, b in zip(texts, new_lens.tolist(), n_bad_list):
        res.append(_norm_slow(text) if b else joined[pos:pos + n])
        pos += n
    return res, [b == 0 for b in n_bad_list]


def _norm_slow(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().translate(_drop_table())


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def record_text(rec: dict) -> str:
    """The text that identifies a conversation: every turn, with its role."""
    return "\n".join(f"{m['role'][0]}:{m['content']}" for m in rec["messages"])


def record_hash(rec: dict) -> int:
    return record_hashes([rec])[0]


def record_hashes(recs: Sequence[dict]) -> list[int]:
    """The exact-dedup hash of each record: its turns normalised, each with its role's initial."""
    return record_features(recs)[0]


def record_features(recs: Sequence[dict], turns: bool = False) -> tuple:
    """(`record_hashes(recs)`, `norm_many([record_text(r) for r in recs])`) from one normalisation of the turns:
    where every turn of a record was mapped character by character and the roles are system/user/assistant,
    the normalised record text is the roles' initials and the normalised turns joined (the ':' and newlines
    that `record_text` adds are dropped by the normalisation); the other records are normalised whole.
    `turns`: also (every turn's normalisation, whether it was mapped character by character), for
    `EvalIndex.match_batch`."""
    norms, simple = _norm_many([m["content"] for r in recs for m in r["messages"]])
    it = iter(zip(norms, simple))
    hashes: list[int] = []
    texts: list[str | None] = []
    redo: list[int] = []
    for i, r in enumerate(recs):
        parts, ok = [], True
        for m in r["messages"]:
            n, plain = next(it)
            role = m["role"][0]
            parts.append(role + n)
            ok = ok and plain and role in "sua"
        hashes.append(hash64("\n".join(parts)))
        texts.append("".join(parts) if ok else None)
        if not ok:
            redo.append(i)
    for i, text in zip(redo, norm_many([record_text(recs[i]) for i in redo])):
        texts[i] = text
    return (hashes, texts, (norms, simple)) if turns else (hashes, texts)


_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
_CHUNK = 4096  # shingles per permutation block: (4096 x 128) 32-bit values = 2 MB, in a core's L2 (8192: 1.2x the time)


def shingle_hashes(norm_text: str, n: int) -> np.ndarray:
    """32-bit hashes of every character n-gram of an already normalised text (vectorised, deterministic)."""
    return batch_shingles([norm_text], n)[0]


def batch_shingles(norm_texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram hashes of many texts at once: (hashes of all texts concatenated, count per text). A text
    shorter than n is padded with code point 0 (one n-gram), as before."""
    padded = [t if len(t) >= n else t + "\0" * (n - len(t)) for t in norm_texts]
    lens = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    if not len(padded):
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    cp = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    m = len(cp) - n + 1
    h = np.zeros(m, dtype=np.uint64)
    for j in range(n):
        h = h * np.uint64(1000003) + cp[j:j + m]
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    counts = lens - n + 1
    starts = np.cumsum(lens) - lens
    first = np.cumsum(counts) - counts
    idx = np.repeat(starts - first, counts) + np.arange(int(counts.sum()))
    return h[idx] & _MAX32, counts


def _identity(x):
    return x


def _fmix(hv: np.ndarray, width: int) -> np.ndarray:
    """MurmurHash3's finalizer, as datasketch applies it before its affine permutations."""
    if width == 32:
        s1, m1, s2, m2, s3 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35),
                              np.uint32(16))
    else:
        s1, m1, s2, m2, s3 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(33),
                              np.uint64(0xC4CEB9FE1A85EC53), np.uint64(33))
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    return hv ^ (hv >> s3)


class MinHasher:
    """MinHash signatures over character n-grams, bit-identical to datasketch's `MinHash(num_perm, seed)` fed
    the same n-gram hashes, for a batch of texts at a time (rows of a (texts x num_perm) array)."""

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1):
        from datasketch import MinHash

        proto = MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity)
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self.scheme = getattr(proto, "scheme", "legacy")  # datasketch < 2.0 has only the legacy scheme
        self.dtype = proto.hashvalues.dtype
        a, b = proto.permutations
        self._a, self._b = a.astype(self.dtype)[:, None], b.astype(self.dtype)[:, None]

    def _permute(self, hv: np.ndarray, perms: np.ndarray | None = None) -> np.ndarray:
        """(permutations, len(hv)) permuted hashes: one row per permutation (all of them, or the rows `perms`),
        so that the per-text minimum runs over contiguous memory."""
        a, b = (self._a, self._b) if perms is None else (self._a[perms], self._b[perms])
        if self.scheme == "legacy":
            return ((a * hv[None, :] + b) % _MERSENNE) & _MAX32
        width = 32 if self.dtype == np.uint32 else 64
        block = a * _fmix(hv.astype(self.dtype), width)[None, :]
        block += b
        return block

    def signatures(self, texts: Sequence[str], normalized: bool = False, perms: np.ndarray | None = None
                   ) -> np.ndarray:
        """(len(texts), num_perm) signatures; `normalized`: the texts already went through norm_for_hash.
        `perms`: only these permutations (columns), each value the same as in the full signature."""
        norms = list(texts) if normalized else norm_many(texts)
        hv, counts = batch_shingles(norms, self.ngram)
        width = self.num_perm if perms is None else len(perms)
        out = np.empty((len(norms), width), dtype=self.dtype)
        ends = np.cumsum(counts)
        chunk = _CHUNK * self.num_perm // max(1, width)  # the same block size in bytes
        affine = self.scheme != "legacy"
        if affine:  # the hash finalizer once for the batch; the blocks in one buffer (no allocation per block)
            a, b = (self._a, self._b) if perms is None else (self._a[perms], self._b[perms])
            fm = _fmix(hv.astype(self.dtype), 32 if self.dtype == np.uint32 else 64)
            buf = np.empty((width, chunk), dtype=self.dtype)
        i = 0
        while i < len(norms):
            start = ends[i] - counts[i]
            j = int(np.searchsorted(ends, start + chunk, side="right"))
            j = max(j, i + 1)
            if affine:
                m = int(ends[j - 1] - start)
                block = buf[:, :m] if m <= chunk else np.empty((width, m), dtype=self.dtype)
                np.multiply(a, fm[None, start:start + m], out=block)
                block += b
            else:
                block = self._permute(hv[start:ends[j - 1]], perms)
            out[i:j] = np.minimum.reduceat(block, (ends[i:j] - counts[i:j]) - start, axis=1).T
            i = j
        return out

    def signature(self, text: str, normalized: bool = False) -> np.ndarray:
        return self.signatures([text], normalized)[0]

    def __call__(self, text: str, normalized: bool = False) -> np.ndarray:
        return self.signature(text, normalized)

    @staticmethod
    def jaccard(a: np.ndarray, b: np.ndarray) -> float:
        """Estimated Jaccard similarity of two signatures (datasketch's `MinHash.jaccard`)."""
        return float(np.count_nonzero(a == b)) / float(len(a))


def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows per band) that datasketch chooses for this threshold and false positive/negative weights."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, weights[0], weights[1])


def band_sums(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(signatures, bands): each band's values summed modulo 2^61-1 — the key datasketch's `MinHashLSHBloom` puts
    in its Bloom filters. Equal bands have equal sums."""
    part = sigs[:, :bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    return part.sum(axis=2) % _MERSENNE


def band_keys(sigs: np.ndarray, bands: int, rows: int, hashed: bool) -> list[list]:
    """Per signature, its band keys. `hashed`: `band_sums`, else the band's bytes (as `MinHashLSH`'s buckets)."""
    if hashed:
        return band_sums(sigs, bands, rows).tolist()
    part = np.ascontiguousarray(sigs[:, :bands * rows])
    return part.view(np.dtype((np.void, rows * part.dtype.itemsize))).tolist()


def bloom_available() -> bool:
    """The Bloom filters are numpy bit arrays (`BloomFilter`): always available."""
    return True


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over a uint64 array (a well-mixed 64-bit hash of each value)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class BloomFilter:
    """A fixed-size Bloom filter of 64-bit keys in a numpy bit array: sized for `capacity` keys at false-positive
    rate `fp` (m = -capacity ln fp / ln² 2 bits, rounded up to a power of two so that a position is a mask, not
    a division; then the fewest positions per key, k, that keep the rate at capacity, (1 - e^(-k n/m))^k, within
    `fp` in those m bits), memory fixed at creation, k positions per key by double hashing. `contains` and `add`
    take a whole array of keys at once."""

    def __init__(self, capacity: int, fp: float):
        import math

        n = max(int(capacity), 1000)
        m = -n * math.log(fp) / math.log(2) ** 2
        self.m = 1 << max(6, int(math.ceil(math.log2(m))))
        best = max(1, int(round(m / n * math.log(2))))
        self.k = next((k for k in range(1, best + 1) if (1 - math.exp(-k * n / self.m)) ** k <= fp), best)
        self._mask = np.uint64(self.m - 1)
        self._bits = np.zeros(self.m // 64, dtype=np.uint64)
        self._steps = np.arange(self.k, dtype=np.uint64)

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.uint64).ravel()
        h1 = _splitmix(keys)
        h2 = _splitmix(h1 ^ _GOLDEN) | np.uint64(1)
        pos = self._steps[None, :] * h2[:, None]
        pos += h1[:, None]
        pos &= self._mask
        return pos

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Per key: True when it may have been added (false positives at rate <= fp), False when it was not."""
        return self.probe(keys)[0]

    def probe(self, keys: np.ndarray) -> tuple[np.ndarray, tuple]:
        """(`contains(keys)`, what `add_probed` needs to add some of the same keys without finding their bit
        positions again: per key its k words' indexes, bit masks and the words as they were read)."""
        pos = self._positions(keys)
        words, masks = pos >> np.uint64(6), np.left_shift(np.uint64(1), pos & np.uint64(63))
        got = self._bits[words]
        return ((got & masks) != 0).all(axis=1), (words, masks, got)

    def add(self, keys: np.ndarray) -> None:
        pos = self._positions(keys).ravel()
        words, bits = pos >> np.uint64(6), np.left_shift(np.uint64(1), pos & np.uint64(63))
        self._or_in(words, bits)

    def add_probed(self, probed: tuple, rows: np.ndarray) -> None:
        """Add the keys `rows` (a mask or indexes) of the last `probe`, with no other change to the filter in
        between: the words read there, with the keys' bits set, are written back (one pass over memory instead of
        a read and a write); where two positions share a word, only one write lands, and the bits that did not are
        set again by `_or_in`."""
        words, masks, got = (a[rows].ravel() for a in probed)
        self._bits[words] = got | masks
        lost = (self._bits[words] & masks) == 0
        if lost.any():
            self._or_in(words[lost], masks[lost])

    def _or_in(self, words: np.ndarray, bits: np.ndarray) -> None:
        # `np.bitwise_or.at` without its cost: a fancy-indexed |= keeps one write per repeated word, so repeat it for
        # the bits that did not land (rare: positions seldom share a 64-bit word); no bit is ever cleared
        while len(words):
            self._bits[words] |= bits
            lost = (self._bits[words] & bits) == 0
            words, bits = words[lost], bits[lost]


class _KeySet:
    """The exact (set) counterpart of `BloomFilter`: memory grows with the keys, no false positives."""

    def __init__(self):
        self._set: set[int] = set()

    def contains(self, keys: np.ndarray) -> np.ndarray:
        s = self._set
        return np.fromiter((k in s for k in np.asarray(keys, dtype=np.uint64).ravel().tolist()), dtype=bool,
                           count=np.asarray(keys).size)

    def add(self, keys: np.ndarray) -> None:
        self._set.update(np.asarray(keys, dtype=np.uint64).ravel().tolist())


def _first_in_batch(keys: np.ndarray) -> np.ndarray:
    """Per key: True where an equal key comes earlier in the array."""
    repeat = np.ones(len(keys), dtype=bool)
    if len(keys):
        repeat[np.unique(keys, return_index=True)[1]] = False
    return repeat


class ExactDeduper:
    """Seen-before test on 64-bit hashes: a fixed-size Bloom filter (false-positive rate `fp`) or a set.
    `seen_or_add_many` decides a whole batch (in order: a hash repeated inside the batch is a duplicate from its
    second occurrence on) with a few numpy operations."""

    def __init__(self, capacity: int = 2_000_000, fp: float = 1e-7, backend: str = "auto"):
        self.backend = "bloom" if backend == "auto" else backend
        self._index = BloomFilter(capacity, fp) if self.backend == "bloom" else _KeySet()
        self.capacity, self.fp = capacity, fp

    def seen_or_add_many(self, hashes: np.ndarray) -> np.ndarray:
        hashes = np.asarray(hashes, dtype=np.uint64)
        if isinstance(self._index, BloomFilter):
            found, probed = self._index.probe(hashes)
            self._index.add_probed(probed, slice(None))
        else:
            found = self._index.contains(hashes)
            self._index.add(hashes)
        return found | _first_in_batch(hashes)

    def seen_or_add(self, h: int) -> bool:
        return bool(self.seen_or_add_many(np.array([h], dtype=np.uint64))[0])


class NearDeduper:
    """Near-duplicate test: has a conversation with estimated Jaccard >= threshold been added before? (Any band
    of its signature equal to a band of an added one, as datasketch's LSH.) The band keys are the band sums of
    datasketch's `MinHashLSHBloom`; (band, key) pairs go into one fixed-size Bloom filter (`backend="bloom"`)
    or one set (`"memory"`)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, capacity: int = 2_000_000, fp: float = 1e-4,
                 backend: str = "auto", weights: tuple[float, float] = (0.4, 0.6)):
        """`weights`: relative cost of false positives vs false negatives when the bands are picked (missing a
        duplicate is the commoner error for short texts, so it weighs a little more)."""
        self.backend = "bloom" if backend == "auto" else backend
        self.threshold = threshold
        self.bands, self.rows = lsh_params(threshold, num_perm, weights)
        self._index = BloomFilter(capacity * self.bands, fp) if self.backend == "bloom" else _KeySet()
        self._salt = _splitmix(np.arange(self.bands, dtype=np.uint64))[None, :]

    def keys(self, sigs: np.ndarray) -> np.ndarray:
        """(signatures, bands) uint64 band keys."""
        return band_sums(sigs, self.bands, self.rows)

    def dup_or_add_many(self, keys: np.ndarray) -> np.ndarray:
        """Per row of `keys` (in order): True when a band equals a band of an added row or of an earlier row of
        this batch that was not itself a duplicate; the others are added."""
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1, self.bands)
        n = len(keys)
        if not n:
            return np.zeros(0, dtype=bool)
        tagged = keys ^ self._salt  # (band, key) as one 64-bit key
        bloom = isinstance(self._index, BloomFilter)
        if bloom:
            found, probed = self._index.probe(tagged)
        else:
            found = self._index.contains(tagged)
        dup = found.reshape(n, self.bands).any(axis=1)
        flat = tagged.ravel()
        _, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
        ids = inv.reshape(n, self.bands)
        shared = (counts[ids] > 1).any(axis=1) & ~dup
        # only rows with a band shared inside the batch can depend on the rows before them: walk those in order
        taken: set[int] = set()
        for i in np.flatnonzero(shared).tolist():
            row = ids[i].tolist()
            if taken.isdisjoint(row):
                taken.update(row)
            else:
                dup[i] = True
        if bloom:
            self._index.add_probed(probed, np.repeat(~dup, self.bands))
        else:
            self._index.add(tagged[~dup])
        return dup

    def is_dup_or_add(self, keys) -> bool:
        """`keys`: one row of `keys(...)`, or a signature."""
        keys = np.asarray(keys)
        if keys.dtype != np.uint64 or keys.size != self.bands:
            keys = self.keys(keys[None, :])
        return bool(self.dup_or_add_many(keys)[0])


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
    """Eval questions in an in-memory banded index (they are few); `match(rec)` names the eval item a training
    record near-duplicates, or returns None; `match_batch(recs)` does it for many records with one signature
    computation. Where several eval items match, the first added is named."""

    PREFILTER_ROWS = 2  # rows per band of the partial signatures that rule most texts out (see `match_texts`)
    PREFILTER_BITS = 22  # a bit table of 4M entries in front of the sorted partial keys

    def __init__(self, hasher: MinHasher, threshold: float = 0.6, min_chars: int = 8):
        self.hasher, self.threshold, self.min_chars = hasher, threshold, min_chars
        self.bands, self.rows = lsh_params(threshold, hasher.num_perm)
        self._order = np.zeros((self.bands, 0), dtype=np.int64)  # per band, the items by band sum
        self._keys: list[str] = []
        self._sigs = np.zeros((0, hasher.num_perm), dtype=hasher.dtype)
        self._sums = np.zeros((self.bands, 0), dtype=np.uint64)
        self._pending: list[tuple[str, str]] = []
        self._exact: dict[str, str] = {}  # normalised text -> first eval item with it
        # prefilter: the first PREFILTER_ROWS rows of each band, summed and tagged with the band, of every eval
        # item (sorted): a text whose band equals an item's has the same partial sum for that band
        self._pre_perms = np.array([b * self.rows + k for b in range(self.bands)
                                    for k in range(min(self.PREFILTER_ROWS, self.rows))], dtype=np.int64)
        self._pre_keys = np.zeros(0, dtype=np.uint64)
        self.n_items = 0
        self.files: list[str] = []

    def add(self, key: str, text: str) -> None:
        self._add_norm(key, norm_for_hash(text))

    def _add_norm(self, key: str, norm: str) -> None:
        if not norm:
            return
        self._exact.setdefault(norm, key)
        if len(norm) < self.min_chars:
            return  # too short for a meaningful n-gram similarity: exact match only
        self._pending.append((key, norm))

    def _flush(self) -> None:
        if not self._pending:
            return
        sigs = self.hasher.signatures([n for _, n in self._pending], normalized=True)
        self._keys += [k for k, _ in self._pending]
        self._sigs = np.concatenate([self._sigs, sigs])
        # the buckets: per band, the items ordered by their band sum (equal bands have equal sums; an equal sum
        # is checked against the band's values)
        sums = band_sums(self._sigs, self.bands, self.rows)
        self._order = np.argsort(sums, axis=0, kind="stable").T.copy()
        self._sums = np.take_along_axis(sums, self._order.T, axis=0).T.copy()  # per band, sorted
        keys = np.sort(self._partial_keys(self._sigs[:, self._pre_perms]), axis=None)
        self._pre_keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # np.unique, by a sort (faster)
        self._pre_bits = np.zeros(1 << self.PREFILTER_BITS, dtype=bool)  # a first, cheaper test of the same keys
        self._pre_bits[self._bit_of(self._pre_keys)] = True
        self._pending = []

    def _bit_of(self, keys: np.ndarray) -> np.ndarray:
        return (keys * _GOLDEN) >> np.uint64(64 - self.PREFILTER_BITS)

    def _partial_keys(self, part: np.ndarray) -> np.ndarray:
        """(texts, bands) keys of the partial signatures `part` (columns `_pre_perms`): each band's partial sum,
        tagged with the band."""
        k = len(self._pre_perms) // self.bands
        sums = part.astype(np.uint64).reshape(len(part), self.bands, k).sum(axis=2)
        shift = np.uint64(max(8, int(self.bands).bit_length()))
        return (sums << shift) | np.arange(self.bands, dtype=np.uint64)[None, :]

    def add_files(self, paths: Iterable[str | Path], errors: ErrorLog | None = None) -> None:
        errors = errors if errors is not None else ErrorLog()
        for path in paths:
            self.files.append(str(path))
            keys, texts = [], []
            for line_no, row in iter_rows(path, errors=errors):
                key = str(row.get("id") or f"{Path(path).name}:{line_no}")
                item = eval_texts(row)
                keys += [key] * len(item)
                texts += item
                self.n_items += 1 if item else 0
            for key, norm in zip(keys, norm_many(texts)):
                self._add_norm(key, norm)
        self._flush()

    def __getstate__(self):
        self._flush()
        return self.__dict__

    def match_texts(self, texts: Sequence[str]) -> list[str | None]:
        """The eval item each text matches (exact after normalisation, or estimated Jaccard >= threshold)."""
        return self.match_norms(norm_many(texts))

    def match_norms(self, normalized: Sequence[str]) -> list[str | None]:
        """`match_texts` of texts already normalised (`norm_many`)."""
        self._flush()
        out: list[str | None] = [None] * len(normalized)
        longs, norms = [], []
        exact, min_chars = self._exact, self.min_chars
        for j, norm in enumerate(normalized):
            if not norm:
                continue
            hit = exact.get(norm)
            if hit is not None:
                out[j] = hit
            elif len(norm) >= min_chars:
                longs.append(j)
                norms.append(norm)
        if not longs or not self._keys:
            return out
        # exact prefilter: a band equal to an eval item's has its first rows equal too, so only the texts with
        # a partial band sum among the eval items' (~5%) need their whole signature
        part = self.hasher.signatures(norms, normalized=True, perms=self._pre_perms)
        keys = self._partial_keys(part)
        may = self._pre_bits[self._bit_of(keys)]  # no false negatives: every eval key has its bit set
        rows, cols = np.nonzero(may)
        cand = keys[rows, cols]
        at = np.minimum(np.searchsorted(self._pre_keys, cand), len(self._pre_keys) - 1)
        maybe = np.zeros(len(keys), dtype=bool)
        maybe[rows[self._pre_keys[at] == cand]] = True
        if not maybe.any():
            return out
        pick = np.flatnonzero(maybe).tolist()
        longs = [longs[i] for i in pick]
        sigs = self.hasher.signatures([norms[i] for i in pick], normalized=True)
        # prefilter: a text can share a bucket only if one of its band sums is an eval item's (no false negatives)
        sums = band_sums(sigs, self.bands, self.rows)
        maybe = np.zeros(len(sigs), dtype=bool)
        for b in range(self.bands):
            table = self._sums[b]  # sorted
            at = np.minimum(np.searchsorted(table, sums[:, b]), len(table) - 1)
            maybe |= table[at] == sums[:, b]
        hit = np.flatnonzero(maybe)
        if not len(hit):
            return out
        sigs, sums = sigs[hit], sums[hit]
        longs = [longs[i] for i in hit.tolist()]
        r = self.rows
        for j, sig, row in zip(longs, sigs, sums):
            cands: set[int] = set()  # the items that share a band with the text
            for b in range(self.bands):
                table = self._sums[b]
                lo, hi = np.searchsorted(table, row[b], "left"), np.searchsorted(table, row[b], "right")
                if lo < hi:
                    items = self._order[b, lo:hi]
                    same = (self._sigs[items, b * r:(b + 1) * r] == sig[b * r:(b + 1) * r]).all(axis=1)
                    cands.update(items[same].tolist())
            if not cands:
                continue
            order = sorted(cands)
            same = np.count_nonzero(self._sigs[order] == sig, axis=1)
            for c, n_same in zip(order, same.tolist()):
                if float(n_same) / float(self.hasher.num_perm) >= self.threshold:
                    out[j] = self._keys[c]
                    break
        return out

    def match_text(self, text: str) -> str | None:
        return self.match_texts([text])[0]

    def match_batch(self, recs: Sequence[dict], turns: tuple[list[str], list[bool]] | None = None
                    ) -> list[str | None]:
        """Per record: the eval item that its first matching query text (user turns, their lines, all user
        turns joined) matches, or None. `turns`: the normalised turns of `record_features(recs, turns=True)`,
        reused for the user turns and, where they were mapped character by character, their join."""
        owner: list[int] = []
        if turns is None:
            texts = []
            for i, rec in enumerate(recs):
                for t in _query_texts(rec, self.min_chars):
                    texts.append(t)
                    owner.append(i)
            hits = self.match_texts(texts)
        else:
            hits = self.match_norms(self._query_norms(recs, *turns, owner))
        out: list[str | None] = [None] * len(recs)
        for i, hit in zip(owner, hits):
            if hit is not None and out[i] is None:
                out[i] = hit
        return out

    def _query_norms(self, recs: Sequence[dict], norms: list[str], simple: list[bool], owner: list[int]
                     ) -> list[str]:
        """The normalised query texts of `_query_texts`, in its order (their records appended to `owner`), from
        the normalised turns; the lines, and the joined user turns when a turn was not mapped character by
        character, are normalised here."""
        out: list[str | None] = []
        raw: list[str] = []
        raw_at: list[int] = []

        def later(i: int, text: str) -> None:
            raw_at.append(len(out))
            raw.append(text)
            out.append(None)
            owner.append(i)

        pos, min_chars = 0, self.min_chars
        for i, rec in enumerate(recs):
            msgs = rec["messages"]
            users = [(m["content"], pos + k) for k, m in enumerate(msgs) if m["role"] == "user"]
            pos += len(msgs)
            for _, k in users:
                out.append(norms[k])
                owner.append(i)
            for u, _ in users:
                if "\n" in u:
                    for ln in u.split("\n"):
                        if len(ln) >= min_chars and ln != u:
                            later(i, ln)
            if len(users) > 1:
                if all(simple[k] for _, k in users):  # "\n" is dropped: the join of the normalisations
                    out.append("".join(norms[k] for _, k in users))
                    owner.append(i)
                else:
                    later(i, "\n".join(u for u, _ in users))
        for j, norm in zip(raw_at, norm_many(raw)):
            out[j] = norm
        return out  # type: ignore[return-value]

    def match(self, rec: dict) -> str | None:
        return self.match_batch([rec])[0]


def find_eval_files(data_dir: str | Path, patterns: Iterable[str] = ("dev*.jsonl", "test_public*.jsonl")) -> list[Path]:
    """Every dev / test_public file under the data folder (one level of dataset folders)."""
    root = Path(data_dir)
    files: set[Path] = set()
    for pat in patterns:
        files.update(root.glob(pat))
        files.update(root.glob(f"*/{pat}"))
    return sorted(files)
