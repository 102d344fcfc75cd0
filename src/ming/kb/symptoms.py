"""Symptom normalisation and extraction.

One `Lexicon` maps surface forms to canonical symptoms: the curated table `tables/symptoms.tsv`
(synonyms and colloquial forms: 肚子疼 → 腹痛, 拉肚子 → 腹泻, 发烧 → 发热 …, with broader symptoms:
右下腹痛 → 腹痛) plus the knowledge base's own symptom vocabulary (each name maps to itself unless the
table maps it elsewhere). The same lexicon reads patient text (`mentions`: longest match, with
negation → "absent" and "不知道有没有…" → "uncertain") and the KB's symptom names (`concepts_in`), so
a patient's 拉肚子 and a disease's 腹泻 meet on one canonical name."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

from ming.errors import MingError

_CLAUSE = re.compile(r"[，,。；;！!？?\n]|但是|但|可是|不过|却|而且|还有|还|并且|同时|然后|伴有|伴")
# words with 不/没/无 that do not deny a symptom after them
_NOT_NEGATION = re.compile(r"不停|不断|不止|不退|不了|不好|不适|不舒服|不行|不住|不能|不少|不得|不对|不一样|"
                           r"不明|无缘无故|无法|没多久|没几天|没过多久|没事|不久|不到")
_UNCERTAIN = re.compile(r"不知道|不清楚|不确定|说不清|不太清楚|有没有|是否|是不是|会不会")
_NEGATION = re.compile(r"没有|没|不|无|未|否认|并无")
_NEG_WINDOW = 10
# "腿也肿了", "肚子一直疼": a body part and its complaint split by an adverb, joined before matching
_SPLIT_FORM = re.compile(r"(肚子|后脑勺|脑壳|脑袋|头|嗓子|喉咙|胸口|腰|背|胃|腿|脚趾头|脚趾|脚|小腿|关节|膝盖|眼睛|耳朵|牙|肩|脖子|颈|手腕|"
                         r"脚踝|呼吸|下面|下身|尿尿|小便|痰)"
                         r"(?:也|都|还|又|有点儿?|有些|一直|老是|老|总是|特别|很|非常|挺|比较|会|就|突然|经常|时常|偶尔|反复|似乎|好像|感觉|"
                         r"隐隐作|隐隐地?|一阵阵地?|一跳一跳地?|半夜|夜里|晚上|的时候|炸开一样|像要?炸开?了?一样)+"
                         r"发?(疼痛|疼|痛|肿|胀|痒|麻|闷|晕|多|不畅|不顺|困难|出血|流血)")


# "松手的时候特别疼", "按下去的时候更疼": release and pressure pain said with words between, joined before matching
_PRESS_FORM = re.compile(r"(松手|松开手?|按着|按下去|按)(?:的时候|时|那一下|一下)?(?:特别|更加|更|很|就|非常)?(疼|痛)")
# symptom words that name a place or service, not a complaint ("去发热门诊")
_NOT_COMPLAINT = re.compile(r"发热门诊|发烧门诊|发热病房|发热科|腹泻门诊|肠道门诊|咳嗽药|止咳|退烧药|退热|止泻|止痛|止吐|"
                            r"头痛药|感冒药")


def _join_split(m: re.Match) -> str:
    return m.group(1) + ("痛" if m.group(2) == "疼痛" else m.group(2))


@dataclass(frozen=True)
class Mention:
    canonical: str
    surface: str
    start: int
    end: int
    polarity: str  # "present" | "absent" | "uncertain"


def normalize_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "")


def table_path() -> Path:
    return Path(str(resources.files("ming.kb") / "tables" / "symptoms.tsv"))


def read_table(path: str | Path | None = None) -> tuple[dict[str, str], dict[str, tuple[str, ...]], str]:
    """(surface -> canonical, canonical -> broader symptoms, sha256 of the file). A malformed row is an
    error naming its line: the table is curated by hand and small."""
    p = Path(path) if path else table_path()
    raw = p.read_bytes()
    surfaces: dict[str, str] = {}
    broader: dict[str, tuple[str, ...]] = {}
    bad: list[str] = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) not in (2, 3) or not cols[0].strip() or not cols[1].strip():
            bad.append(f"line {n}: {line!r}")
            continue
        surface, canonical = normalize_text(cols[0].strip()), normalize_text(cols[1].strip())
        if surface in surfaces and surfaces[surface] != canonical:
            bad.append(f"line {n}: {surface!r} already maps to {surfaces[surface]!r}")
            continue
        surfaces[surface] = canonical
        if len(cols) == 3 and cols[2].strip():
            more = tuple(b.strip() for b in cols[2].split(",") if b.strip())
            broader[canonical] = tuple(dict.fromkeys(broader.get(canonical, ()) + more))
    if bad:
        raise MingError(f"symptom table {p}: {len(bad)} malformed row(s) (want 'surface<TAB>canonical[<TAB>broader,…]'): "
                        + "; ".join(bad[:5]))
    return surfaces, broader, hashlib.sha256(raw).hexdigest()


def longest_matches(text: str, table, maxlen: int, minlen: int = 1) -> list[tuple[int, int, str]]:
    """Longest key of `table` at each position, left to right, non-overlapping: (start, end, key)."""
    out, i, n = [], 0, len(text)
    while i < n:
        for L in range(min(maxlen, n - i), minlen - 1, -1):
            s = text[i:i + L]
            if s in table:
                out.append((i, i + L, s))
                i += L
                break
        else:
            i += 1
    return out


def usable_kb_name(name: str) -> bool:
    """KB symptom names worth matching in text: two or more characters, some of them Chinese."""
    return len(name) >= 2 and bool(re.search(r"[\u4e00-\u9fff]", name)) and not re.search(r"[，,。；;]", name)


class Lexicon:
    def __init__(self, surfaces: dict[str, str], broader: dict[str, tuple[str, ...]] | None = None,
                 table_surfaces: Iterable[str] = ()):
        self.surfaces = surfaces
        self.broader = broader or {}
        self.table_surfaces = frozenset(table_surfaces)
        self.maxlen = max((len(s) for s in surfaces), default=1)
        self._expand_cache: dict[str, frozenset[str]] = {}

    @classmethod
    def build(cls, kb_symptoms: Iterable[str] = (), table: str | Path | None = None) -> "Lexicon":
        table_map, broader, _ = read_table(table)
        surfaces = {}
        for name in kb_symptoms:
            name = normalize_text(name)
            if usable_kb_name(name):
                surfaces[name] = name
        surfaces.update(table_map)  # the table wins over the KB's identity mapping
        for canonical in set(table_map.values()):
            surfaces.setdefault(canonical, canonical)
        return cls(surfaces, broader, table_map)

    @property
    def canonicals(self) -> set[str]:
        return set(self.surfaces.values())

    def normalise(self, term: str) -> str | None:
        """The canonical name of a whole term (None when the term is not in the lexicon)."""
        return self.surfaces.get(normalize_text(term).strip())

    def expand(self, canonical: str) -> frozenset[str]:
        """A canonical symptom with all its broader ones (右下腹痛 → {右下腹痛, 腹痛})."""
        got = self._expand_cache.get(canonical)
        if got is None:
            out, todo = set(), [canonical]
            while todo:
                c = todo.pop()
                if c not in out:
                    out.add(c)
                    todo.extend(self.broader.get(c, ()))
            got = self._expand_cache[canonical] = frozenset(out)
        return got

    def _scan(self, text: str, maxlen: int) -> list[tuple[int, int, str]]:
        return longest_matches(text, self.surfaces, maxlen)

    def concepts_in(self, name: str) -> set[str]:
        """Canonical symptoms a KB symptom name stands for: its own canonical form, plus the symptoms
        named inside it ("发热伴寒战" → 发热, 寒战; "下腹部压痛" → 下腹部压痛, 压痛), each expanded."""
        name = normalize_text(name)
        out: set[str] = set()
        whole = self.surfaces.get(name)
        if whole:
            out |= self.expand(whole)
        if not whole or name not in self.table_surfaces:
            for _, _, s in self._scan(name, min(self.maxlen, len(name) - 1 if whole else len(name))):
                out |= self.expand(self.surfaces[s])
        return out

    def mentions(self, text: str) -> list[Mention]:
        """Symptoms named in patient text, each with its polarity in that clause."""
        text = _SPLIT_FORM.sub(_join_split, normalize_text(text))
        text = _PRESS_FORM.sub(lambda m: ("松手" if m.group(1).startswith("松") else "按着") + "更疼", text)
        text = _NOT_COMPLAINT.sub(lambda m: "□" * len(m.group(0)), text)
        found = self._scan(text, self.maxlen)
        masked = list(text)
        for a, b, _ in found:  # a cue inside another symptom name ("食欲不振") is not a cue
            masked[a:b] = ["□"] * (b - a)
        masked_text = "".join(masked)
        out = []
        for a, b, s in found:
            out.append(Mention(self.surfaces[s], s, a, b, polarity_at(masked_text, a)))
        return out


def polarity_at(masked_text: str, start: int) -> str:
    """present / absent / uncertain for a symptom starting at `start`, from the words before it in
    its clause (up to the last clause break or contrast word)."""
    head = masked_text[:start]
    cut = 0
    for m in _CLAUSE.finditer(head):
        cut = m.end()
    prefix = head[cut:][-_NEG_WINDOW:]
    if _UNCERTAIN.search(prefix):
        return "uncertain"
    if _NEGATION.search(_NOT_NEGATION.sub("__", prefix)):
        return "absent"
    return "present"
