"""The loaded knowledge base: diseases and their facts, the symptom lexicon, and the lookups the
consultation controller needs (diseases with a symptom, symptom rarity, disease commonness, disease
names in text, synonym-aware disease matching)."""

from __future__ import annotations

import gc
import math
import pickle
import re
import sys
from pathlib import Path

from ming.errors import MingError
from ming.kb.build import INDEX_VERSION, build_index, index_path, kb_source, stale_reason
from ming.kb.symptoms import Lexicon, longest_matches, normalize_text

DEFAULT_RATIO = 1e-4  # commonness of a disease whose page states none
RATIO_CAP = 1e-3  # the KB's own 发病率 counts up to this (above it the figures are noise: 不动杆菌肺炎 60 %)
TIER_RATIO = {1: 0.05, 2: 0.01, 3: 0.003}  # tables/common.tsv: the hand-listed common diseases
COMMON_TABLE = Path(__file__).parent / "tables" / "common.tsv"
# the crawled KB lists bacteriology bench methods among a disease's checks (急性胃肠炎: 明胶液化试验, 碳源利用试验 …):
# steps inside a stool or blood culture, never a test a patient asks for; they are left out of what is advised
LAB_METHOD = re.compile(r"(?:利用|液化|水解|发酵|分解|中介|吲哚|甲基红|氧化酶|硝酸盐还原|胆汁溶菌|CAMP)试验$")
_TIERS: dict[str, int] | None = None


def common_tiers(path: Path | None = None) -> dict[str, int]:
    """Disease name -> commonness tier (1–3) from tables/common.tsv (a malformed row is an error naming its line)."""
    global _TIERS
    if _TIERS is not None and path is None:
        return _TIERS
    p = path or COMMON_TABLE
    out: dict[str, int] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 2 or not cols[0].strip() or cols[1].strip() not in ("1", "2", "3"):
            raise MingError(f"common-disease table {p}: line {n} is not 'name<TAB>tier (1-3)': {line!r}")
        out[cols[0].strip()] = int(cols[1])
    if path is None:
        _TIERS = out
    return out
_DX_PREFIX = re.compile(r"^(初步诊断|疾病诊断|诊断|考虑为|考虑|疑似|可能为|可能是|可能)")
_DX_SUFFIX = re.compile(r"(可能性大|可能|待排|待查|待除外|有关)$")


def _bigrams(text: str) -> set[str]:
    t = re.sub(r"[^\u4e00-\u9fffA-Za-z0-9]", "", text)
    return {t[i:i + 2] for i in range(len(t) - 1)}


class KB:
    def __init__(self, data: dict, path: Path | None = None):
        self.data = data
        self.path = path
        self.diseases: dict[str, dict] = data["diseases"]
        self.by_concept: dict[str, list[str]] = data["by_concept"]
        self.lexicon = Lexicon.build(data["symptom_names"])
        self.n = max(1, len(self.diseases))
        self._names: dict[str, str] | None = None
        self._maxname = 0
        self._concepts: dict[str, frozenset[str]] = {}
        self._prior_terms: dict[tuple[str, float], float] = {}

    def warm(self, prior_weight: float) -> "KB":
        """Fill the per-disease caches now (symptom sets, prior terms), so the first consultation turns
        cost what later ones do."""
        for name in self.diseases:
            self.concepts(name)
            self.prior_term(name, prior_weight)
        return self

    # -- facts ------------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.data["source"]

    @property
    def licence(self) -> str:
        return self.data["licence"]

    def disease(self, name: str) -> dict | None:
        return self.diseases.get(name)

    def concepts(self, name: str) -> frozenset[str]:
        """The canonical symptoms a disease lists (each with its broader ones)."""
        got = self._concepts.get(name)
        if got is None:
            got = self._concepts[name] = frozenset((self.diseases.get(name) or {}).get("concepts", ()))
        return got

    def common_checks(self, name: str, k: int = 3) -> list[str]:
        """A disease's first k checks (the index orders them: the ones most diseases list first), bench methods of
        bacteriology (LAB_METHOD) left out."""
        return [c for c in (self.diseases.get(name) or {}).get("checks", []) if not LAB_METHOD.search(c)][:k]

    def diseases_with(self, concept: str) -> list[str]:
        return self.by_concept.get(concept, [])

    def idf(self, concept: str) -> float:
        return math.log((self.n + 1) / (len(self.by_concept.get(concept, ())) + 1)) + 1.0

    def prior_term(self, name: str, weight: float) -> float:
        """weight × log(commonness), cached per disease."""
        key = (name, weight)
        got = self._prior_terms.get(key)
        if got is None:
            got = self._prior_terms[key] = weight * math.log(self.prior(name))
        return got

    def prior(self, name: str) -> float:
        """How common the disease is: its tier in tables/common.tsv, else the KB's 发病率 capped at RATIO_CAP."""
        tier = common_tiers().get(name)
        if tier:
            return TIER_RATIO[tier]
        r = (self.diseases.get(name) or {}).get("ratio")
        return min(RATIO_CAP, max(1e-6, r)) if r else DEFAULT_RATIO

    def common(self, name: str) -> bool:
        """Listed in tables/common.tsv (a disease of everyday practice)."""
        return name in common_tiers()

    # -- disease names ----------------------------------------------------------------------------
    def _name_table(self) -> dict[str, str]:
        if self._names is None:
            names: dict[str, str] = {}
            for name, d in self.diseases.items():
                for a in d.get("aliases", []):
                    names.setdefault(normalize_text(a), name)
            for name in self.diseases:
                if len(name) >= 2:
                    names[normalize_text(name)] = name
            self._names = names
            self._maxname = max((len(k) for k in names), default=1)
        return self._names

    def diseases_in(self, text: str) -> list[str]:
        """KB diseases named in text (names and aliases, longest match), in order of first mention."""
        table = self._name_table()
        out: list[str] = []
        for _, _, key in longest_matches(normalize_text(text), table, self._maxname, minlen=2):
            if table[key] not in out:
                out.append(table[key])
        return out

    def gold_terms(self, gold: str) -> list[str]:
        """A doctor's diagnosis split into terms, each mapped to its KB disease name where one matches."""
        parts = re.split(r"[，,；;、。/\s？?（）()：:]|及|和|或|合并|伴有|伴", normalize_text(gold))
        out = []
        for p in parts:
            p = _DX_SUFFIX.sub("", _DX_PREFIX.sub("", p.strip()))
            if len(p) >= 2 and p not in out:
                out.append(p)
        return out

    def same_disease(self, candidate: str, gold: str) -> bool:
        """Synonym-aware match of one candidate disease against a doctor's diagnosis: a gold term equals
        the candidate or one of its KB aliases, one contains the other (≥ 2 characters), or ≥ 60 % of
        the gold term's character bigrams are the candidate's."""
        names = {normalize_text(candidate)} | {normalize_text(a) for a in (self.disease(candidate) or {}).get("aliases", [])}
        for term in self.gold_terms(gold):
            for name in names:
                if term == name or (len(term) >= 2 and (term in name or name in term)):
                    return True
                tb = _bigrams(term)
                if len(term) >= 3 and tb and len(tb & _bigrams(name)) / len(tb) >= 0.6:
                    return True
        return False


_CACHE: dict[tuple[str, int], KB] = {}


def read_index(path: Path) -> dict:
    """Unpickle with the cyclic garbage collector paused: the index is ~10^5 small acyclic objects, and
    collections triggered while they are created cost a fifth of the load time."""
    was = gc.isenabled()
    gc.disable()
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    finally:
        if was:
            gc.enable()


def load_kb(source: str | Path | None = None, *, build: bool = True, log=None) -> KB:
    """The KB for `source` (a folder; default $MING_KB or the medical_kg data). The index is built on
    first use (a few seconds, said on stderr) and rebuilt when the source or symptom table changed;
    `build=False` makes a missing or stale index an error instead."""
    log = log or (lambda msg: print(f"[ming kb] {msg}", file=sys.stderr, flush=True))
    src = kb_source(source)
    path = index_path(src)
    reason = None
    data = None
    if path.is_file():
        key = (str(path), path.stat().st_mtime_ns)
        if key in _CACHE and stale_reason(_CACHE[key].data, src) is None:
            return _CACHE[key]
        try:
            data = read_index(path)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            reason = f"unreadable index ({exc})"
        if data is not None:
            reason = "index format changed" if data.get("version") != INDEX_VERSION else stale_reason(data, src)
    else:
        reason = "no index yet"
    if reason:
        if not build:
            raise MingError(f"knowledge-base index for {src}: {reason} ({path}); run `ming kb build`"
                            + (f" --kb {src}" if source else ""))
        log(f"building the index of {src} ({reason}) …")
        rep = build_index(src, path)
        log(f"{rep.counts['diseases']} diseases indexed in {rep.seconds:.1f} s → {rep.index}"
            + (f"; {rep.n_problems} bad source lines skipped (see `ming kb info`)" if rep.n_problems else ""))
        data = read_index(path)
    kb = KB(data, path)
    _CACHE[(str(path), path.stat().st_mtime_ns)] = kb
    return kb
