"""Cleaning of converted records: Unicode normalisation, PII removal, length limits, language check,
empty/broken turns. Every drop is counted by reason; every PII replacement is counted by kind."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ming.data.dedup import composing_seconds
from ming.data.records import validate_record
from ming.errors import MingError

# Full-width ASCII letters/digits -> half-width (NFKC would also turn Chinese punctuation ，。？ into ASCII,
# which we do not want in Chinese text).
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
                    for c in range(r[0], r[1] + 1)}
_INVISIBLE = dict.fromkeys([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD], None)
_SPACES = {0x3000: 0x20, 0x00A0: 0x20, 0x2002: 0x20, 0x2003: 0x20, 0x2009: 0x20, 0x202F: 0x20}
_TRANSLATE = {**_FULLWIDTH_ALNUM, **_INVISIBLE, **_SPACES}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HSPACE = re.compile(r"[ \t]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")

# PII patterns, most specific first. Replacements are placeholders so the sentence still reads.
PII_PATTERNS: list[tuple[str, re.Pattern, str]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[邮箱]"),
    ("url", re.compile(r"(?:https?://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+"
                       r"|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|cn|net|org|gov|edu|info|io)\b(?:/[\w\-./?=&%#]*)?"),
     "[网址]"),
    ("id_number", re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                             r"\d{3}[\dXx](?![0-9A-Za-z])"), "[身份证号]"),
    ("phone", re.compile(r"(?<![\d.])(?:\+?86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}(?![\d.])"
                         r"|(?<![\d.])0\d{2,3}-\d{7,8}(?![\d.])|(?<![\d.])[48]00[-\s]?\d{3}[-\s]?\d{4}(?![\d.])"),
     "[电话]"),
    ("im_account", re.compile(r"(?:QQ|qq|微信号?|VX|vx|wx|WX)\s*[号：:]?\s*[A-Za-z][A-Za-z0-9_-]{4,19}"
                              r"|(?:QQ|qq)\s*[号：:]?\s*\d{5,11}"), "[联系方式]"),
]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


_TO_TRANSLATE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_TRANSLATE)) + "]")
# cheap tests that a pattern cannot match, so most texts skip most of the PII regexes; each is implied by its
# pattern (a text that fails the test cannot match)
_ASCII_DIGIT = re.compile(r"[0-9]")  # every ID-card and phone pattern starts with an ASCII digit ...
_DIGITS4 = re.compile(r"\d{4}")  # ... and holds four digits in a row
_TLD = re.compile(r"\.(?:com|cn|net|org|gov|edu|info|io)")  # a URL without a scheme or www. ends in one of these
_IM_CUES = ("QQ", "qq", "微信", "VX", "vx", "wx", "WX")
_IM_CUE = re.compile("|".join(_IM_CUES))  # any of them, in one search


def _pii_guards(t: str) -> tuple[bool, ...]:
    """Per PII pattern (in PII_PATTERNS order): whether it can match `t` at all."""
    digits = _ASCII_DIGIT.search(t) is not None and _DIGITS4.search(t) is not None
    return ("@" in t, "://" in t or "www." in t or ("." in t and _TLD.search(t) is not None), digits, digits,
            _IM_CUE.search(t) is not None)


# Whatever `normalize_text` would change after NFC: a character it translates or removes (\r, tab and control
# characters included), two spaces in a row, three newlines, whitespace at either end of a line or of the text.
# A text with none of these is already normal (tests/test_data_clean.py compares both paths).
_CHANGED_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_TRANSLATE))
                            + r"\r\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE_AT_LINE_END = re.compile(r"[^\S\n]\n|\n[^\S\n]")


def _needs_work(t: str) -> bool:
    return (_CHANGED_CHARS.search(t) is not None or "  " in t or "\n\n\n" in t or t[:1].isspace()
            or t[-1:].isspace() or ("\n" in t and _SPACE_AT_LINE_END.search(t) is not None))


_FLAGS: np.ndarray | None = None
_F_ODD, _F_SPACE, _F_DIGIT = 1, 2, 4  # per character: changed by normalize_text / a PII cue / NFC-unsafe; a
# space other than newline; a digit (what \\d matches)
_CUE_CHARS = "@:.wWQqVv微"  # a character of every PII guard's cue: @, ://, www., .com..., QQ/qq, VX/vx, wx/WX, 微信


def char_flags() -> np.ndarray:
    """Per BMP code point, its `_F_*` bits (built once on first use). NFC-unsafe: a character that NFC changes,
    or whose canonical decomposition holds a combining mark or a character that composes with the one before
    it; a text of NFC-safe characters is NFC."""
    global _FLAGS
    if _FLAGS is None:
        seconds = composing_seconds()
        flags = np.zeros(0x10000, dtype=np.uint8)
        for cp in range(0x10000):
            c = chr(cp)
            if 0xD800 <= cp <= 0xDFFF or (cp > 0x7F and (
                    unicodedata.normalize("NFC", c) != c
                    or any(unicodedata.combining(x) or ord(x) in seconds for x in unicodedata.normalize("NFD", c)))):
                flags[cp] |= _F_ODD
            if c.isspace() and c != "\n":
                flags[cp] |= _F_SPACE
            if c.isdecimal():
                flags[cp] |= _F_DIGIT
        for c in _CUE_CHARS:
            flags[ord(c)] |= _F_ODD
        for cp in list(_TRANSLATE) + [0x0D, 0x09, *range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]:
            flags[cp] |= _F_ODD
        _FLAGS = flags
    return _FLAGS


def plain_texts(texts: list[str]) -> list[bool]:
    """Per text, True when `normalize_text` and `scrub_pii` would return it unchanged, found for a whole batch
    with a few numpy operations over its characters: no character either one changes or cues on (PII cues:
    @, ://, www., a dot, QQ/VX/wx/微信 letters), no four digits in a row, no two spaces in a row, no three
    newlines, no space next to a newline, no space at either end, and only NFC-safe characters. False means
    "maybe not": such texts take the full path."""
    if not texts:
        return []
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = len(cp)
    if not n:
        return [True] * len(texts)
    f = char_flags()[np.minimum(cp, 0xFFFF)]
    odd = (f & _F_ODD) != 0
    odd |= cp > 0xFFFF
    space = (f & _F_SPACE) != 0
    nl = cp == 10
    ws = space | nl
    hit = odd.copy()  # a flag at the position where a problem starts (a pair across two texts flags the first)
    hit[:-1] |= space[:-1] & ws[1:]
    hit[:-1] |= nl[:-1] & space[1:]
    if n > 2:
        hit[:-2] |= nl[:-2] & nl[1:-1] & nl[2:]
    if n > 3:
        dig = (f & _F_DIGIT) != 0
        hit[:-3] |= dig[:-3] & dig[1:-2] & dig[2:-1] & dig[3:]
    nonempty = lens > 0
    starts = np.cumsum(lens) - lens
    bad = np.zeros(len(texts), dtype=bool)
    first, last = starts[nonempty], (starts + lens - 1)[nonempty]
    bad[nonempty] = (np.add.reduceat(hit, first) > 0) | ws[first] | ws[last]
    return (~bad).tolist()


def normalize_text(text: str) -> str:
    """NFC, full-width letters/digits to half-width, invisible and control characters removed, spaces
    collapsed, at most one blank line in a row, lines stripped at the end."""
    text = unicodedata.normalize("NFC", text)
    return _normalize_slow(text) if _needs_work(text) else text


def _normalize_slow(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _TO_TRANSLATE.search(text):
        text = text.translate(_TRANSLATE)
    text = _CONTROL.sub("", text)
    text = _HSPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def scrub_pii(text: str, counts: Counter | None = None) -> str:
    for (kind, pattern, repl), possible in zip(PII_PATTERNS, _pii_guards(text)):
        if not possible:
            continue
        text, n = pattern.subn(repl, text)
        if n and counts is not None:
            counts[kind] += n
    return text


def language_of(text: str) -> str:
    """'zh' when CJK characters are at least 30% of the letters, 'en' when there are (almost) none, else 'mixed'."""
    cjk = len(text) - len(_CJK.sub("", text)) if text else 0
    return _language(cjk, len(_LATIN_WORD.findall(text)))


def _language(cjk: int, latin_words: int) -> str:
    if cjk == 0 and latin_words == 0:
        return "none"
    # compare characters of Chinese with words of Latin script (one Chinese character ~ one word's weight)
    ratio = cjk / (cjk + latin_words)
    if ratio >= 0.3:
        return "zh"
    if ratio <= 0.05:
        return "en"
    return "mixed"


def languages_of(texts: list[str]) -> list[str]:
    """`language_of` of many texts with a few numpy operations over all their characters at once."""
    if not texts:
        return []
    cp = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = np.cumsum(lens) - lens
    cjk = ((cp >= 0x4E00) & (cp <= 0x9FFF)) | ((cp >= 0x3400) & (cp <= 0x4DBF)) | ((cp >= 0xF900) & (cp <= 0xFAFF))
    low = cp | np.uint32(0x20)
    latin = (low >= 0x61) & (low <= 0x7A)  # [A-Za-z]
    word_start = latin.copy()
    word_start[1:] &= ~latin[:-1]
    nonempty = lens > 0
    word_start[starts[nonempty]] = latin[starts[nonempty]]  # a text's first letter starts a word
    n_cjk = np.zeros(len(texts), dtype=np.int64)
    n_words = np.zeros(len(texts), dtype=np.int64)
    if cp.size:
        n_cjk[nonempty] = np.add.reduceat(cjk, starts[nonempty])
        n_words[nonempty] = np.add.reduceat(word_start, starts[nonempty])
    return [_language(c, w) for c, w in zip(n_cjk.tolist(), n_words.tolist())]


@dataclass
class CleanConfig:
    max_chars: int = 8000  # whole conversation, characters
    max_turn_chars: int = 4000
    min_user_chars: int = 2
    min_assistant_chars: int = 1
    max_messages: int = 40
    languages: tuple[str, ...] = ("zh",)  # accepted languages of the conversation; ("any",) turns the check off
    pii: bool = True

    @classmethod
    def from_dict(cls, d: dict | None) -> "CleanConfig":
        d = dict(d or {})
        if "languages" in d:
            langs = d["languages"]
            d["languages"] = tuple([langs] if isinstance(langs, str) else langs)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise MingError(f"unknown clean option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _string_turns(rec: dict) -> list[str]:
    """The contents of a record's turns up to the first that is not a string (where cleaning stops)."""
    msgs = rec.get("messages")
    out: list[str] = []
    if isinstance(msgs, list):
        for m in msgs:
            content = m.get("content") if isinstance(m, dict) else None
            if not isinstance(content, str):
                break
            out.append(content)
    return out


@dataclass
class Cleaner:
    config: CleanConfig = field(default_factory=CleanConfig)
    drops: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    seen: int = 0
    kept: int = 0

    def clean(self, rec: dict, *, languages: tuple[str, ...] | None = None) -> dict | None:
        """The cleaned record, or None (the reason is counted in `drops`)."""
        self.seen += 1
        reason = self._clean(rec, languages or self.config.languages)
        if reason:
            self.drops[reason] += 1
            return None
        self.kept += 1
        return rec

    def clean_many(self, recs: list[dict], *, languages: tuple[str, ...] | None = None) -> list[dict]:
        """The records that survive cleaning, in order (`clean` of each, with one language check for all)."""
        languages = languages or self.config.languages
        contents = [_string_turns(rec) for rec in recs]
        flat = plain_texts([c for turns in contents for c in turns])
        pos = 0
        pending = []
        for rec, turns in zip(recs, contents):
            self.seen += 1
            reason, msgs = self._clean_turns(rec, flat[pos:pos + len(turns)])
            pos += len(turns)
            if reason:
                self.drops[reason] += 1
            else:
                pending.append((rec, msgs))
        langs = (languages_of(["\n".join(m["content"] for m in msgs) for _, msgs in pending])
                 if "any" not in languages else ["any"] * len(pending))
        kept = []
        for (rec, msgs), lang in zip(pending, langs):
            reason = None if lang == "any" or lang in languages else f"language_{lang}"
            if reason is None:
                rec["messages"] = msgs
                if validate_record(rec, training=True):
                    reason = "bad_structure"
            if reason:
                self.drops[reason] += 1
            else:
                self.kept += 1
                kept.append(rec)
        return kept

    def _clean(self, rec: dict, languages: tuple[str, ...]) -> str | None:
        reason, out = self._clean_turns(rec)
        if reason:
            return reason
        if "any" not in languages:
            lang = language_of("\n".join(m["content"] for m in out))
            if lang not in languages:
                return f"language_{lang}"
        rec["messages"] = out
        if validate_record(rec, training=True):
            return "bad_structure"
        return None

    def _clean_turns(self, rec: dict, plain: list[bool] | None = None) -> tuple[str | None, list[dict]]:
        """(drop reason, []) or (None, the cleaned messages): everything but the language check. `plain`: per
        string turn, in order, whether `plain_texts` found it needs no normalisation and no PII scrub."""
        cfg = self.config
        msgs = rec.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return "empty_conversation", []
        if len(msgs) > cfg.max_messages:
            return "too_many_turns", []
        total = 0
        out = []
        pii, max_turn = cfg.pii, cfg.max_turn_chars
        min_user, min_assistant = cfg.min_user_chars, cfg.min_assistant_chars
        for j, m in enumerate(msgs):
            content = m.get("content") if isinstance(m, dict) else None
            if not isinstance(content, str):
                return "broken_turn", []
            if plain is None or not plain[j]:
                content = normalize_text(content)
                if pii:
                    content = scrub_pii(content, self.pii)
            if not content:
                return "empty_turn", []
            role = m.get("role")
            n = len(content)
            if role == "user":
                if n < min_user:
                    return "too_short", []
            elif role == "assistant" and n < min_assistant:
                return "too_short", []
            if n > max_turn:
                return "too_long", []
            total += n
            out.append({"role": role, "content": content})
        if total > cfg.max_chars:
            return "too_long", []
        return None, out
