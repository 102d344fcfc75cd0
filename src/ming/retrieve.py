"""Offline passage retrieval with sources: character-bigram BM25 over the knowledge base (and optionally
the train splits of the shipped QA corpora), so an answer can say where a fact came from.

    idx = load_index()                          # built on first use under $MING_HOME/retrieval/ (seconds)
    hits = idx.search("右下腹疼痛伴发热是不是阑尾炎", k=3)
    addendum = context_text(hits)               # system-prompt addendum for the model
    line = citation_line(hits)                  # "参考：知识库·急性阑尾炎；…" shown under the answer

Passage sources are a small interface (`Passage` lists): `kb_passages(kb)` turns the knowledge base
`ming.kb.load_kb()` loads (issue 16; a medical_kg-schema folder) into one passage per disease;
`qa_passages(file, label)` reads a {question, answer} JSONL. Nothing is downloaded; the
index is a scipy sparse matrix of BM25 weights (documents x character bigrams), saved as .npz + .json.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ming import envs
from ming.errors import MingError
from ming.kb import kb_source, load_kb

INDEX_VERSION = 4
K1, B = 1.2, 0.75
_GARBLED = re.compile(r"[\u0080-\u00ff]")  # Latin-1 letters in a Chinese name: UTF-8 read as Latin-1
_KEEP = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]+")
_STOP = set("的了是在我和有就不人都一个上也很到说要去你会着没有看好自己这么吗呢吧啊怎么什么请问医生您好".split()) | set(
    "什么 怎么 请问 医生 你好 您好 是不 不是 一下 可以 应该 需要 这个 那个 吗？ 问题 情况 如何 为什".split())


@dataclass
class Passage:
    source: str       # label shown to the user, e.g. "知识库·急性阑尾炎"
    title: str
    text: str         # what goes into the prompt


@dataclass
class Hit:
    passage: Passage
    score: float


def bigrams(text: str) -> list[str]:
    """Character bigrams of the CJK / alphanumeric runs (lower-cased, NFKC), minus very common ones."""
    out = []
    for run in _KEEP.findall(unicodedata.normalize("NFKC", text).lower()):
        out += [run[i:i + 2] for i in range(len(run) - 1)] if len(run) > 1 else [run]
    return [g for g in out if g not in _STOP]


# ---- passage sources -----------------------------------------------------------------------------------
def kb_passages(kb, desc_chars: int = 220, per_list: int = 6) -> list[Passage]:
    """One passage per disease of a loaded `ming.kb.KB` (issue 16's index of a medical_kg-schema folder):
    description, symptoms, checks, departments, drugs. Diseases with no description or a mis-decoded
    name are left out (counted on stderr)."""
    out, skipped = [], 0
    for name, d in kb.diseases.items():
        if not d.get("desc") or _GARBLED.search(name):
            skipped += 1
            continue
        desc = re.sub(r"\s+", " ", d["desc"])[:desc_chars]
        parts = [f"{name}：{desc}"]
        for label, key in (("常见症状", "symptoms"), ("常用检查", "checks"), ("就诊科室", "departments"), ("常用药物", "drugs")):
            if d.get(key):
                parts.append(f"{label}：{'、'.join(d[key][:per_list])}")
        out.append(Passage(source=f"知识库·{name}", title=name, text="；".join(parts)))
    if skipped:
        print(f"[ming retrieve] {skipped} KB diseases without a description or with a garbled name left out",
              file=sys.stderr)
    return out


def qa_passages(path: Path, label: str, answer_chars: int = 240) -> list[Passage]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MingError(f"{path}:{n}: not JSON ({exc})") from exc
            q, a = (r.get("question") or "").strip(), (r.get("answer") or "").strip()
            if q and a:
                out.append(Passage(source=f"{label}#{r.get('id', n)}", title=q[:40],
                                   text=f"问：{q[:120]}\n答：{a[:answer_chars]}"))
    return out


def default_sources(with_qa: bool = False) -> list[tuple[str, Path]]:
    """(kind, path) of the default passage sources: the KB folder (`ming.kb.kb_source`: $MING_KB, else
    data/medical_kg), plus the train splits of huatuo26m_qa and toyhom_qa when `with_qa`."""
    out = [("kg", kb_source())]
    data = envs.data_dir()
    if with_qa and data is not None:
        for name, label in (("huatuo26m_qa", "问答·Huatuo26M"), ("toyhom_qa", "问答·Toyhom")):
            p = data / name / "train.jsonl"
            if p.is_file():
                out.append((label, p))
    return out


# ---- the index -------------------------------------------------------------------------------------------
class Index:
    def __init__(self, passages: list[Passage], weights, vocab: dict[str, int], min_score: float = 10.0):
        self.passages = passages
        self.weights = weights          # scipy.sparse.csc_matrix, docs x terms, BM25 weight per (doc, term)
        self.vocab = vocab
        self.min_score = min_score
        self._titles = None

    @classmethod
    def build(cls, passages: list[Passage]) -> "Index":
        import numpy as np
        from scipy import sparse

        vocab: dict[str, int] = {}
        rows, cols, tfs, lens = [], [], [], []
        for i, p in enumerate(passages):
            grams = bigrams(p.title + " " + p.title + " " + p.text)  # the title counts twice
            counts: dict[int, int] = {}
            for g in grams:
                j = vocab.setdefault(g, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            rows += [i] * len(counts)
            cols += list(counts)
            tfs += list(counts.values())
            lens.append(len(grams))
        n = len(passages)
        tf = np.asarray(tfs, dtype=np.float32)
        dl = np.asarray(lens, dtype=np.float32)[np.asarray(rows, dtype=np.int64)]
        avgdl = float(np.mean(lens)) if lens else 1.0
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=len(vocab)).astype(np.float32)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        w = idf[np.asarray(cols, dtype=np.int64)] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))
        mat = sparse.csc_matrix((w, (rows, cols)), shape=(n, len(vocab)), dtype=np.float32)
        return cls(passages, mat, vocab)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The k best passages scoring at least `min_score` (so unrelated questions get none)."""
        import numpy as np

        terms = sorted({self.vocab[g] for g in bigrams(query) if g in self.vocab})
        if not terms:
            return []
        scores = np.asarray(self.weights[:, terms].sum(axis=1)).ravel()
        for i in self._title_hits(query):
            scores[i] *= 1.5  # the question names this disease outright
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        top = top[np.argsort(-scores[top])]
        return [Hit(self.passages[i], float(scores[i])) for i in top if scores[i] >= self.min_score]

    def _title_hits(self, query: str) -> list[int]:
        if self._titles is None:
            names = {}
            for i, p in enumerate(self.passages):
                if p.source.startswith("知识库·") and len(p.title) >= 2:
                    names.setdefault(p.title, i)
            self._titles = names
        q = unicodedata.normalize("NFKC", query)
        return [i for name, i in self._titles.items() if name in q]

    # -- persistence
    def save(self, path: Path, stamp: dict) -> None:
        from scipy import sparse

        path.parent.mkdir(parents=True, exist_ok=True)
        sparse.save_npz(path.with_suffix(".npz"), self.weights.tocsc())
        meta = {"version": INDEX_VERSION, "stamp": stamp, "vocab": self.vocab,
                "passages": [[p.source, p.title, p.text] for p in self.passages]}
        tmp = path.with_suffix(f".json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path.with_suffix(".json"))

    @classmethod
    def load(cls, path: Path) -> tuple["Index", dict]:
        from scipy import sparse

        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        w = sparse.load_npz(path.with_suffix(".npz")).tocsc()
        return cls([Passage(*p) for p in meta["passages"]], w, meta["vocab"]), meta


def _stamp(sources: list[tuple[str, Path]]) -> dict:
    st = {"version": INDEX_VERSION}
    for kind, p in sources:
        files = [p / "entities.jsonl", p / "triples.jsonl"] if kind == "kg" else [p]
        st[f"{kind}:{p}"] = [[f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.exists()]
    return st


_LOADED: dict[str, Index] = {}


def load_index(with_qa: bool = False, sources: list[tuple[str, Path]] | None = None, log=None) -> Index:
    """The index over `sources` (default: `default_sources(with_qa)`), built and saved under
    $MING_HOME/retrieval/ on first use, rebuilt when a source file changed."""
    log = log or (lambda m: print(f"[ming retrieve] {m}", file=sys.stderr, flush=True))
    sources = sources or default_sources(with_qa)
    stamp = _stamp(sources)
    # one index file per set of sources; a changed source or INDEX_VERSION rebuilds it in place
    tag = hashlib.sha1(json.dumps(sorted(s for s in stamp if s != "version")).encode()).hexdigest()[:10]
    path = envs.ming_home() / "retrieval" / f"index-{tag}"
    if tag in _LOADED:
        return _LOADED[tag]
    if path.with_suffix(".json").is_file() and path.with_suffix(".npz").is_file():
        idx, meta = Index.load(path)
        if meta.get("stamp") == stamp:
            _LOADED[tag] = idx
            return idx
    t0 = time.perf_counter()
    passages: list[Passage] = []
    for kind, p in sources:
        passages += kb_passages(load_kb(p, log=log)) if kind == "kg" else qa_passages(p, kind)
    idx = Index.build(passages)
    idx.save(path, stamp)
    log(f"indexed {len(passages)} passages in {time.perf_counter() - t0:.1f} s → {path}.npz")
    _LOADED[tag] = idx
    return idx


# ---- what the turn adds ----------------------------------------------------------------------------------
def context_text(hits: list[Hit], max_chars: int = 900) -> str:
    """System-prompt addendum with the retrieved passages, numbered, each with its source."""
    if not hits:
        return ""
    lines = ["【参考资料（程序检索所得，可能不完全相关：只在与问题相关时使用，不要编造资料里没有的内容）】"]
    used = 0
    for n, h in enumerate(hits, 1):
        text = h.passage.text[: max(0, max_chars - used)]
        if not text:
            break
        used += len(text)
        lines.append(f"[{n}] {h.passage.source}：{text}")
    return "\n".join(lines)


def citation_line(hits: list[Hit]) -> str:
    """"参考：知识库·急性阑尾炎；问答·Huatuo26M#…" ('' without hits)."""
    return ("参考：" + "；".join(dict.fromkeys(h.passage.source for h in hits))) if hits else ""


_MINE = re.compile(r"^\[\d+\] (?:知识库|问答)·")


class RetrievalStage:
    """Retrieval as a stage of the turn pipeline (`ming.respond.Pipeline`, issue 14), before fitting:

        # ming/stages.py, REGISTRY (after "consult"); off unless asked (docs/grounding.md: measured):
        "retrieval": lambda opts: RetrievalStage(**opts.settings["retrieval"]) if "retrieval" in opts.settings else None,

    adds the k best passages to `turn.context`, "参考：…" after the answer and `turn.meta["retrieval"]`.
    Skipped for a pasted report (grounded on its findings), a canned reply and consult mode."""

    name = "retrieval"

    def __init__(self, k: int = 2, with_qa: bool = False, index: Index | None = None):
        self.k = k
        self.index = index or load_index(with_qa=with_qa)  # at start-up: a missing KB fails before the model loads

    def prepare(self, turn) -> None:
        from ming.respond import Added  # the pipeline's own type (ming.respond imports no stage)

        if turn.canned is not None or getattr(turn.safety, "findings", None) or "consult" in turn.meta:
            return
        question = next((m["content"] for m in reversed(turn.conversation) if m["role"] == "user"), "")
        hits = self.index.search(question, k=self.k)
        turn.meta[self.name] = {"sources": [h.passage.source for h in hits], "scores": [round(h.score, 1) for h in hits]}
        if hits:
            turn.context += [f"[{i}] {h.passage.source}：{h.passage.text}" for i, h in enumerate(hits, 1)]
            turn.tail.append(Added(self.name, "\n\n" + citation_line(hits)))

    def shrink(self, turn) -> bool:
        mine = [c for c in turn.context if _MINE.match(c)]
        if mine:
            turn.context.remove(mine[-1])
            return True
        return False

    def post_check(self, turn):
        return None
