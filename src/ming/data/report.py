"""Statistics of a mix and the human-readable report (`report.md`) of `ming data build`."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field

CHAR_BINS = (0, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_EXCHANGES = tuple(str(i) for i in range(6))


_BIN_LABELS = tuple(f"{lo}-{hi - 1}" for lo, hi in zip(CHAR_BINS, CHAR_BINS[1:])) + (f">={CHAR_BINS[-1]}",)


def char_bin(n: int) -> str:
    """The label of the CHAR_BINS bin of n characters."""
    return _BIN_LABELS[bisect_right(CHAR_BINS, n, 1) - 1]


@dataclass
class MixStats:
    """Counts per category / subset / source and split, and length histograms, of written records."""

    total: int = 0
    splits: Counter = field(default_factory=Counter)
    category: Counter = field(default_factory=Counter)
    subset: Counter = field(default_factory=Counter)
    source: Counter = field(default_factory=Counter)
    chars: dict = field(default_factory=lambda: defaultdict(Counter))
    exchanges: dict = field(default_factory=lambda: defaultdict(Counter))
    char_sum: Counter = field(default_factory=Counter)

    def add(self, rec: dict, split: str) -> None:
        self.total += 1
        self.splits[split] += 1
        cat = rec.get("category", "")
        self.category[cat] += 1
        self.subset[rec.get("subset", "")] += 1
        self.source[rec.get("source", "")] += 1
        n = ex = 0
        for m in rec["messages"]:
            n += len(m["content"])
            if m["role"] == "assistant":
                ex += 1
        self.chars[cat][char_bin(n)] += 1
        self.char_sum[cat] += n
        self.exchanges[cat][_EXCHANGES[ex] if ex < 6 else "6+"] += 1

    def merge(self, other: "MixStats") -> None:
        """Add the counts of `other` (the stats of the lines that follow): the same as adding its records here,
        keys in the same order."""
        self.total += other.total
        for name in ("splits", "category", "subset", "source", "char_sum"):
            getattr(self, name).update(getattr(other, name))
        for name in ("chars", "exchanges"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine[k].update(v)

    def to_dict(self) -> dict:
        return {"total": self.total, "splits": dict(self.splits), "category": dict(self.category),
                "subset": dict(self.subset), "source": dict(self.source),
                "chars_histogram": {k: dict(v) for k, v in self.chars.items()},
                "exchanges_histogram": {k: dict(v) for k, v in self.exchanges.items()},
                "mean_chars": {k: round(self.char_sum[k] / self.category[k], 1) for k in self.category}}


_NEAR = {"bloom": "in Bloom filters (fixed memory)", "memory": "in memory"}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def render_report(r: dict) -> str:
    plan, mix, srcs = r["plan"], r["mix"], r["sources"]
    total = mix["total"] or 1
    L = [f"# Data mix report: {r['recipe']['name']}", "",
         f"- recipe: `{r['recipe']['path']}`, seed {r['recipe']['seed']}, total: {r['recipe']['total']}",
         f"- data folder: `{r['data_dir']}`",
         f"- written: **{mix['total']}** records (train {mix['splits'].get('train', 0)}, dev "
         f"{mix['splits'].get('dev', 0)}) in {r['timing']['seconds']} s "
         f"({r['timing']['input_records']} records converted from the sources, {r['timing']['records_per_second']} "
         "records/s through conversion, cleaning, dedup and decontamination)"]
    if plan["auto"]:
        L.append(f"- total chosen automatically: the largest mix whose category shares the data can meet without "
                 f"repeating records; limited by **{plan['binding_category']}**")
    L += ["", "## Categories: target share vs actual", "",
          "| category | target share (MING) | target | actual | actual share |", "|---|---:|---:|---:|---:|"]
    for c, cd in plan["categories"].items():
        act = mix["category"].get(c, 0)
        L.append(f"| {c} | {_pct(cd['share'])} | {cd['target']} | {act} | {_pct(act / total)} |")
    L += ["", "## Subsets (MING's 11 rows): target vs actual", "",
          "| subset | category | MING count | target share | target | available | actual | actual share | note |",
          "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, sp in plan["subsets"].items():
        act = mix["subset"].get(name, 0)
        if abs(act - sp["nominal"]) <= 1:
            why = "met" + (" (rounding)" if act != sp["nominal"] else "")
        elif act < sp["nominal"]:
            why = (f"**short by {sp['nominal'] - act}**: only {sp['available']} records available after cleaning "
                   f"and dedup; siblings in {sp['category']} filled the gap")
        elif act > sp["nominal"]:
            why = f"+{act - sp['nominal']} to fill a sibling's shortfall"
        else:
            why = "met"
        L.append(f"| {name} | {sp['category']} | {int(sp['weight'])} | {_pct(sp['share'])} | {sp['nominal']} | "
                 f"{sp['available']} | {act} | {_pct(act / total)} | {why} |")
    L += ["", "Where each row's data comes from (and why it is smaller than MING's):", ""]
    for name, sp in plan["subsets"].items():
        if sp.get("note"):
            L.append(f"- **{name}**: {sp['note']}")
    L += ["", "## Sources", "",
          "| source | subset | rows read | bad input | converted | converter skips | cleaning drops | exact dups | "
          "eval contaminated | near dups | available | cap | used |", "|---|---|" + "---:|" * 11]
    for name, s in srcs.items():
        skips = sum(s["converter_skips"].values())
        L.append(f"| {name} | {s['subset']} | {s['rows_read']} | {s['bad_input']} | {s['converted']} | {skips} | "
                 f"{s['clean_dropped']} | {s['exact_dup']} | {s['eval_contaminated']} | {s['near_dup']} | {s['kept']} | "
                 f"{s['cap'] if s['cap'] is not None else '-'} | {mix['source'].get(name, 0)} |")
    L += ["", "## Drops by reason", "", "| stage | reason | records |", "|---|---|---:|"]
    conv = Counter()
    for s in srcs.values():
        conv.update(s["converter_skips"])
    for k, v in sorted(conv.items(), key=lambda kv: -kv[1]):
        L.append(f"| converter | {k} | {v} |")
    for k, v in sorted(r["cleaning"]["drops"].items(), key=lambda kv: -kv[1]):
        L.append(f"| cleaning | {k} | {v} |")
    d = r["dedup"]
    L += [f"| dedup | exact duplicate | {d['exact_dups']} |", f"| dedup | near duplicate | {d['near_dups']} |",
          f"| decontamination | near/exact duplicate of an eval question | {d['eval_contaminated']} |"]
    errs = r["input_problems"]["errors"]
    for k, v in sorted(errs.items(), key=lambda kv: -kv[1]):
        L.append(f"| input | {k} | {v} |")
    pii = r["cleaning"]["pii_replaced"]
    L += ["", f"PII replaced by placeholders: {', '.join(f'{k} {v}' for k, v in pii.items()) or 'none'}.", ""]
    L += ["## Deduplication and decontamination", "",
          f"- exact: 64-bit hash of the normalised conversation, {d['exact_backend']} filter",
          f"- near: MinHash ({d['num_perm']} permutations, character {d['ngram']}-grams, datasketch's) + LSH bands "
          f"{_NEAR.get(d['near_backend'], d['near_backend'])}, Jaccard >= {d['threshold']}",
          f"- eval: {r['eval']['items']} eval items from {len(r['eval']['files'])} files; a record is dropped when a "
          f"user turn, one of its lines or all user turns joined reach Jaccard >= {d['decontam_threshold']} with an "
          "eval question, or equal one after normalisation"]
    if d["contamination_examples"]:
        L.append("- examples (record ~ eval item): " + "; ".join(d["contamination_examples"][:5]))
    a = r.get("audit") or {}
    if a:
        L += ["", "## Audit of the written files", "",
              f"- records: {a['records']}; schema errors: **{a['schema_errors']}**",
              f"- exact duplicates: **{a['exact_duplicates']}** (deliberate upsampling repeats: "
              f"{a['upsampling_repeats']})",
              f"- eval contamination: **{a['eval_contaminated']}**"]
    L += ["", "## Length (characters per conversation)", ""]
    bins = [f"{lo}-{hi - 1}" for lo, hi in zip(CHAR_BINS, CHAR_BINS[1:])] + [f">={CHAR_BINS[-1]}"]
    L += ["| category | mean | " + " | ".join(bins) + " |", "|---|---:|" + "---:|" * len(bins)]
    for c, h in mix["chars_histogram"].items():
        L.append(f"| {c} | {mix['mean_chars'].get(c, 0)} | " + " | ".join(str(h.get(b, 0)) for b in bins) + " |")
    L += ["", "## Assistant turns per conversation", "", "| category | 1 | 2 | 3 | 4 | 5 | 6+ |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for c, h in mix["exchanges_histogram"].items():
        L.append(f"| {c} | " + " | ".join(str(h.get(k, 0)) for k in ("1", "2", "3", "4", "5", "6+")) + " |")
    ex = r["input_problems"]["examples"]
    if ex or r["input_problems"]["warnings"]:
        L += ["", "## Input problems (file:line)", ""]
        L += [f"- {e}" for e in ex[:20]]
        for k, v in r["input_problems"]["warnings"].items():
            L.append(f"- warning ({v}×): {k}")
        L += [f"  - {w}" for w in r["input_problems"].get("warning_examples", [])[:20]]
    L.append("")
    return "\n".join(L)
