"""Data-mix recipes (YAML): which sources, through which converter, into which subset, with what weight.

```yaml
name: my-mix
seed: 42
total: auto            # records in the mix; auto = the largest mix whose category shares the data can meet
dev_fraction: 0.02     # share of the mix written to dev.jsonl
max_error_rate: 0.01   # fail when more than this share of a source's rows is bad input
clean: {max_chars: 8000, languages: [zh]}
dedup: {ngram: 5, num_perm: 128, threshold: 0.8, decontam_threshold: 0.6}
eval_files: auto       # every dev*/test_public* file under the data folder, or a list of paths
subsets:
  exam_qa:
    category: knowledge_qa
    weight: 77000      # MING's count for this row; shares are weights / sum of weights
    max_upsample: 1.0  # 1 = never repeat a record; 2 = each record at most twice
    sources:
      - {name: cmexam, kind: exam_mcq, paths: [cmexam/train.jsonl], licence: "Apache-2.0", cap: 50000,
         weight: 1.0, options: {cases: exclude, select: {mod: 2, rem: 0}}, languages: [zh], encoding: auto}
```
`cap`: most records taken from the source; `weight`: preference among a subset's sources (share ~ available x
weight); `options`: the converter's (see ming.data.sources), `select` keeps a deterministic 1/mod of the rows;
`languages`: accepted languages for this source (overrides clean.languages); `encoding`: auto | utf-8 | gb18030.
Relative paths are resolved against the data folder (`--data-dir`, `data_dir:` in the recipe, or
`ming.envs.data_dir()`); globs are expanded.
"""

from __future__ import annotations

import glob as _glob
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ming.data.records import CATEGORIES
from ming.data.sources import KINDS
from ming.errors import MingError
from ming.prompts import MODES


@dataclass
class SourceSpec:
    name: str
    kind: str
    paths: list[str]
    options: dict = field(default_factory=dict)
    licence: str = ""
    cap: int | None = None
    weight: float = 1.0  # preference when a subset has more data than it needs: share ~ available * weight
    languages: tuple[str, ...] | None = None
    encoding: str = "auto"


@dataclass
class SubsetSpec:
    name: str
    category: str
    weight: float
    sources: list[SourceSpec]
    max_upsample: float = 1.0
    note: str = ""
    system: str | None = None  # a system prompt for this subset's records: a mode name (qa, consult) or the text


@dataclass
class Recipe:
    name: str
    subsets: list[SubsetSpec]
    seed: int = 42
    total: int | str = "auto"
    dev_fraction: float = 0.02
    max_error_rate: float = 0.01
    clean: dict = field(default_factory=dict)
    dedup: dict = field(default_factory=dict)
    eval_files: list[str] | str = "auto"
    data_dir: str | None = None
    path: str = ""
    description: str = ""

    def category_weights(self) -> dict[str, float]:
        out = {c: 0.0 for c in CATEGORIES}
        for s in self.subsets:
            out[s.category] += s.weight
        return {c: w for c, w in out.items() if w > 0}


def packaged_recipes() -> dict[str, Path]:
    base = resources.files("ming.data") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in base.iterdir() if str(p).endswith(".yaml")}


def _req(d: dict, key: str, where: str, typ: type | tuple) -> Any:
    if key not in d:
        raise MingError(f"recipe: {where} has no '{key}'")
    if not isinstance(d[key], typ):
        raise MingError(f"recipe: {where}.{key} must be {typ}, found {type(d[key]).__name__}")
    return d[key]


def _system(value, where: str) -> str | None:
    """A subset's `system`: a mode of ming.prompts (qa, consult) or a literal prompt."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MingError(f"recipe: {where}.system must be a string (qa, consult or the prompt text)")

    return MODES.get(value, value)


def parse_recipe(data: dict, path: str = "") -> Recipe:
    if not isinstance(data, dict):
        raise MingError(f"recipe {path}: top level must be a mapping")
    raw_subsets = _req(data, "subsets", "recipe", dict)
    subsets = []
    seen_sources: set[str] = set()
    for sname, s in raw_subsets.items():
        where = f"subsets.{sname}"
        if not isinstance(s, dict):
            raise MingError(f"recipe: {where} must be a mapping")
        cat = _req(s, "category", where, str)
        if cat not in CATEGORIES:
            raise MingError(f"recipe: {where}.category {cat!r} is not one of {', '.join(CATEGORIES)}")
        weight = _req(s, "weight", where, (int, float))
        if weight <= 0:
            raise MingError(f"recipe: {where}.weight must be > 0")
        sources = []
        for i, src in enumerate(_req(s, "sources", where, list)):
            w = f"{where}.sources[{i}]"
            if not isinstance(src, dict):
                raise MingError(f"recipe: {w} must be a mapping")
            kind = _req(src, "kind", w, str)
            if kind not in KINDS:
                raise MingError(f"recipe: {w}.kind {kind!r} is not one of {', '.join(KINDS)}")
            name = str(src.get("name") or f"{sname}_{i}")
            if name in seen_sources:
                raise MingError(f"recipe: source name {name!r} is used twice; names must be unique")
            seen_sources.add(name)
            paths = src.get("paths") or ([src["path"]] if src.get("path") else None)
            if not paths or not isinstance(paths, list):
                raise MingError(f"recipe: {w} needs 'paths' (a list of files or folders)")
            langs = src.get("languages")
            sources.append(SourceSpec(name=name, kind=kind, paths=[str(p) for p in paths],
                                      options=dict(src.get("options") or {}), licence=str(src.get("licence", "")),
                                      cap=int(src["cap"]) if src.get("cap") is not None else None,
                                      weight=float(src.get("weight", 1.0)),
                                      languages=tuple([langs] if isinstance(langs, str) else langs) if langs else None,
                                      encoding=str(src.get("encoding", "auto"))))
        subsets.append(SubsetSpec(name=sname, category=cat, weight=float(weight), sources=sources,
                                  max_upsample=float(s.get("max_upsample", 1.0)), note=str(s.get("note", "")),
                                  system=_system(s.get("system"), where)))
    total = data.get("total", "auto")
    if not (total == "auto" or (isinstance(total, int) and total > 0)):
        raise MingError(f"recipe: total must be 'auto' or a positive integer, found {total!r}")
    dev = float(data.get("dev_fraction", 0.02))
    if not 0 <= dev < 0.5:
        raise MingError(f"recipe: dev_fraction must be in [0, 0.5), found {dev}")
    return Recipe(name=str(data.get("name") or Path(path).stem or "recipe"), subsets=subsets,
                  seed=int(data.get("seed", 42)), total=total, dev_fraction=dev,
                  max_error_rate=float(data.get("max_error_rate", 0.01)), clean=dict(data.get("clean") or {}),
                  dedup=dict(data.get("dedup") or {}), eval_files=data.get("eval_files", "auto"),
                  data_dir=data.get("data_dir"), path=path, description=str(data.get("description", "")))


def load_recipe(name_or_path: str) -> Recipe:
    """A YAML file, or the name of a packaged recipe (`default`)."""
    import yaml

    p = Path(name_or_path)
    if not p.is_file():
        packaged = packaged_recipes()
        if name_or_path in packaged:
            p = packaged[name_or_path]
        else:
            raise MingError(f"recipe not found: {name_or_path}; give a YAML file or one of the packaged recipes: "
                            f"{', '.join(sorted(packaged))}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MingError(f"recipe {p} is not valid YAML: {exc}") from exc
    return parse_recipe(data, str(p))


def resolve_paths(spec: SourceSpec, data_dir: Path | None) -> list[Path]:
    """Files (or, for knowledge_graph-style sources, folders) of a source; relative paths are under data_dir."""
    out: list[Path] = []
    for raw in spec.paths:
        p = Path(raw).expanduser()
        if not p.is_absolute():
            if data_dir is None:
                raise MingError(f"source {spec.name}: relative path {raw!r} needs a data folder; pass --data-dir or "
                                "set MING_DATA_DIR (the raw data lives in ../shared/data)")
            p = data_dir / p
        matches = sorted(Path(m) for m in _glob.glob(str(p))) if any(c in str(p) for c in "*?[") else [p]
        if not matches or not all(m.exists() for m in matches):
            raise MingError(f"source {spec.name}: {p} does not exist; check the recipe path or --data-dir "
                            f"(data folder: {data_dir})")
        out.extend(matches)
    return out
