"""Loader for the medical knowledge graph (shared/data/medical_kg): `entities.jsonl` {name, type, attrs?} and
`triples.jsonl` {head, relation, tail}. A KG is a graph, not a stream of records: it is held in memory once per
folder (diseases with their relations and attributes, ~8.8k diseases / 254k triples here: ~100 MB)."""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

from ming.data.rawio import iter_rows
from ming.data.errorlog import ErrorLog
from ming.errors import MingError

RELATIONS = ("has_symptom", "has_complication", "belongs_to_department", "common_drug", "need_check", "good_food",
             "avoid_food", "recommend_recipe")
_RELATION_SET = frozenset(RELATIONS)


@dataclass
class Disease:
    name: str
    attrs: dict = field(default_factory=dict)
    rel: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class KnowledgeGraph:
    diseases: dict[str, Disease]
    types: dict[str, set[str]]  # entity name -> types
    folder: Path
    problems: ErrorLog = field(default_factory=ErrorLog)  # rows read and bad lines (reported again on cache hits)

    def ordered(self) -> list[Disease]:
        return [self.diseases[k] for k in sorted(self.diseases)]


def load_kg(folder: str | Path, errors: ErrorLog, encoding: str = "auto") -> KnowledgeGraph:
    """Load a KG folder; its rows and bad lines go into `errors` (and stay with the graph for cache hits)."""
    kg = _load_kg(folder, ErrorLog(), encoding)
    errors.merge(kg.problems)
    return kg


def _load_kg(folder: str | Path, errors: ErrorLog, encoding: str) -> KnowledgeGraph:
    folder = Path(folder)
    ent_path, tri_path = folder / "entities.jsonl", folder / "triples.jsonl"
    for p in (ent_path, tri_path):
        if not p.is_file():
            raise MingError(f"knowledge graph folder {folder} has no {p.name}; a KG source needs entities.jsonl "
                            "and triples.jsonl (see shared/data/medical_kg/README.md)")
    diseases: dict[str, Disease] = {}
    types: dict[str, set[str]] = {}
    for line_no, e in iter_rows(ent_path, errors=errors, encoding=encoding):
        name, typ = e.get("name"), e.get("type")
        if not isinstance(name, str) or not name.strip() or not isinstance(typ, str):
            errors.error(ent_path, line_no, "entity needs string 'name' and 'type'")
            continue
        types.setdefault(name, set()).add(typ)
        if typ == "Disease":
            attrs = e.get("attrs") if isinstance(e.get("attrs"), dict) else {}
            diseases.setdefault(name, Disease(name)).attrs.update(attrs)
    rels: dict[tuple[str, str], dict[str, None]] = {}  # (head, relation) -> tails, in order, without repeats
    for line_no, t in iter_rows(tri_path, errors=errors, encoding=encoding):
        h, r, tail = t.get("head"), t.get("relation"), t.get("tail")
        if not (isinstance(h, str) and isinstance(r, str) and isinstance(tail, str)
                and h.strip() and r.strip() and tail.strip()):
            errors.error(tri_path, line_no, "triple needs string 'head', 'relation' and 'tail'")
            continue
        if r not in _RELATION_SET:
            errors.error(tri_path, line_no, f"unknown relation {r!r}")
            continue
        tails = rels.get((h, r))
        if tails is None:
            tails = rels[(h, r)] = {}
            if h not in diseases:
                diseases[h] = Disease(h)
            diseases[h].rel[r] = []  # keeps the order in which relations first appear
        tails[tail] = None
    for (h, r), tails in rels.items():
        diseases[h].rel[r] = list(tails)
    return KnowledgeGraph(diseases, types, folder, errors)


_CACHE: dict[tuple[str, str], KnowledgeGraph] = {}
_DIGESTS: dict[tuple[str, int, int], str] = {}
_DISK: list[Path | None] = [None]  # a build's folder for parsed graphs (`use_disk_cache`), shared by its processes


def use_disk_cache(folder: str | Path | None) -> None:
    """Keep each parsed graph (without bad lines) as a pickle in `folder`, keyed by the files' content, so that
    the other sources and worker processes of one build that read the same graph unpickle it (0.14 CPU-s for
    the shipped graph) instead of parsing it again (0.9 CPU-s). None turns it off. A build sets it to a folder
    of its own work directory, which it deletes at the end."""
    _DISK[0] = Path(folder) if folder is not None else None


def _digest(path: Path) -> str:
    """Content digest of a file (memoised per path, size and modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def load_kg_cached(folder: str | Path, errors: ErrorLog, encoding: str = "auto") -> KnowledgeGraph:
    """The same graph is used by several sources of one build (KG QA, passages, instructions, counterfactuals):
    load it once. The cache is keyed by the files' content (a copy of the folder elsewhere is the same graph);
    only the most recent graph is kept (a copy with bad lines is loaded again, so that they name its files). Every source that reads the folder reports its rows and bad lines,
    whether the graph came from the cache or not (so a build in one process and one spread over processes
    report the same)."""
    folder = Path(folder)
    ent, tri = folder / "entities.jsonl", folder / "triples.jsonl"
    key = ((_digest(ent) + _digest(tri)) if ent.is_file() and tri.is_file() else str(folder.resolve()), encoding)
    cached = _CACHE.get(key)
    if cached is not None and cached.folder != folder and (cached.problems.errors or cached.problems.warnings):
        cached = None  # its problems name the other folder's files: load this one for its own file:line
    if cached is None:
        _CACHE.clear()
        _CACHE[key] = _load_via_disk(folder, errors, encoding, key[0] if key[0] != str(folder.resolve()) else None)
    else:
        errors.merge(_CACHE[key].problems)
    kg = _CACHE[key]
    return kg if kg.folder == folder else replace(kg, folder=folder)


def _load_via_disk(folder: Path, errors: ErrorLog, encoding: str, digest: str | None) -> KnowledgeGraph:
    """`load_kg`, through the build's disk cache where there is one. Only a graph without bad lines is stored
    (a graph's problems name its own files); a stored graph reports the rows it read like a parsed one."""
    disk = _DISK[0]
    path = disk / f"kg-{digest}-{encoding}.pickle" if disk is not None and digest is not None else None
    if path is not None and path.is_file():
        with open(path, "rb") as fh:
            gc.disable()  # ~10^5 small objects: the collector would run many times for nothing
            try:
                kg = pickle.load(fh)
            finally:
                gc.enable()
        errors.merge(kg.problems)
        return replace(kg, folder=folder)
    kg = load_kg(folder, errors, encoding)
    if path is not None and not (kg.problems.errors or kg.problems.warnings):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two processes may store the same graph: each renames its own
        with open(tmp, "wb") as fh:
            pickle.dump(kg, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    return kg
