"""Find the answer letter(s) in a model's free-text reply to a multiple-choice question.

Rules are tried in order of how explicit they are ("答案：B" before a bare leading "B."); the first
that yields letters which are all options of the item wins. Nothing is guessed: when no rule
applies the reply is "unparsed", counted and reported separately (and scored as wrong)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

SEP = r"(?:[\s、,，/和及与&;；]|and\b)*"  # between letters of a multi-answer: "A、C、D", "A, C and D", "ACD"


@dataclass(frozen=True)
class Extraction:
    letters: str | None  # sorted, deduplicated ("BD"), or None when unparsed
    rule: str  # which rule matched, "unparsed" when none

    @property
    def parsed(self) -> bool:
        return self.letters is not None


def _letters_group(valid: str) -> str:
    L = f"(?-i:[{valid}])"  # letters are upper case even where the words around them are not
    return rf"({L}(?:{SEP}{L})*)"


def _rules(valid: str) -> list[tuple[str, re.Pattern]]:
    G = _letters_group(valid)
    # the letter group must not run into a word ("Bartonella") nor be a letter called wrong ("C，D错误")
    end = r"(?![A-Za-z])(?!\s*(?:选项|项)?\s*(?:错|不|是错|为错|is\s+(?:incorrect|wrong|not)))"
    marker_zh = r"(?:正确答案|参考答案|最佳答案|标准答案|最终答案|答案|正确选项|最佳选项|应选择|应当选|应该选|应选|故选|因此选|所以选|本题选|我选择|我选|选择|选)"
    marker_en = r"(?:the\s+(?:correct\s+|best\s+|final\s+)?answer\s+(?:is|would\s+be|should\s+be)|(?:correct|best|final)\s+answer\s*(?:is|:)|answer\s*(?:is|:)|correct\s+(?:option|choice)\s+is|(?:i\s+)?(?:choose|select|pick)|i\s+would\s+(?:choose|select|pick|go\s+with))"
    return [
        ("bracket_answer", re.compile(rf"【\s*答案\s*】\s*[:：]?\s*[\(（\[]?\s*{G}{end}")),
        ("marker_zh", re.compile(rf"{marker_zh}\s*(?:应该是|应当是|应该为|应为|应是|可能是|[是为])?\s*[:：]?\s*(?:选项)?\s*[\(（\[【“\"']?\s*{G}{end}")),
        ("marker_en", re.compile(rf"{marker_en}\s*[:：]?\s*(?:option\s+)?[\(\[\*\"']*\s*{G}{end}", re.IGNORECASE)),
        ("option_word", re.compile(rf"选项\s*{G}{end}\s*(?:是|为)?\s*(?:正确|对|最|符合)")),
        ("letter_correct", re.compile(rf"(?<![A-Za-z]){G}\s*(?:选项|项)?\s*(?:是正确|正确|为正确|最符合|最合适|最恰当|是对的|对)")),
        ("letter_correct_en", re.compile(rf"(?:option|choice)?\s*\(?(?<![A-Za-z]){G}\)?\s+is\s+(?:the\s+)?(?:correct|right|best)", re.IGNORECASE)),
        ("bold", re.compile(rf"\*\*\s*[\(（]?\s*{G}{end}\s*[\)）]?[\.．。、:：]?\s*\*\*")),
        ("leading", re.compile(rf"^\s*[\(（\[]?\s*{G}\s*[\)）\]]?(?=$|[\.．。、:：\s，,)）]|[项选是为正对])(?!\s+[a-z])")),
    ]


def _norm_letters(group: str, valid: str) -> str | None:
    letters = sorted(set(ch for ch in re.sub(r"\band\b", " ", group) if "A" <= ch <= "Z"))
    if not letters or any(ch not in valid for ch in letters):
        return None
    return "".join(letters)


def extract_choice(text: str, options: dict[str, str] | str) -> Extraction:
    """`options` is the item's option dict (or just its letters, e.g. "ABCDE")."""
    valid = "".join(sorted(options if isinstance(options, str) else options.keys()))
    raw = unicodedata.normalize("NFKC", text or "").strip()
    if not raw or not valid:
        return Extraction(None, "unparsed")
    # a reply that is nothing but letters ("B", "A、C", "ACD", "(B)")
    bare = re.sub(r"[\s\.．。、,，:：;；()（）\[\]【】*\"'“”和及与&/]", "", raw)
    if bare and len(bare) <= len(valid) and bare.isascii() and bare.isalpha() and bare.isupper():
        letters = _norm_letters(bare, valid)
        if letters:
            return Extraction(letters, "bare")
    for name, pat in _rules(valid):
        for m in pat.finditer(raw):
            letters = _norm_letters(m.group(1), valid)
            if letters:
                return Extraction(letters, name)
    # the reply quotes exactly one option's text (e.g. "暂缓结婚，需先治疗")
    if not isinstance(options, str):
        texts = {k: unicodedata.normalize("NFKC", str(v)).strip() for k, v in options.items()}
        hits = [k for k, v in texts.items() if len(v) >= 2 and v in raw
                and not any(k2 != k and v in v2 for k2, v2 in texts.items())]
        if len(hits) == 1:
            return Extraction(hits[0], "option_text")
    return Extraction(None, "unparsed")


def answer_line_complete(text: str, options: dict[str, str] | str) -> bool:
    """Has the model finished an answer line ("答案：B" / "Answer: B" followed by a line break)? The
    evaluator then stops generating: the reason after it is not scored. A reply that reasons first and
    answers later runs on to max_new_tokens; only an explicit answer marker before a line break counts."""
    cut = text.rfind("\n")
    if cut <= 0:
        return False
    ex = extract_choice(text[:cut], options)
    return bool(ex.parsed and ex.rule in ("marker_zh", "marker_en"))
