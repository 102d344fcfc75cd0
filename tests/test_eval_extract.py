"""Answer-letter extraction on real-looking model outputs (Chinese and English, 4-5+ options,
multi-answer), and the cases that must stay "unparsed" rather than be guessed."""

import pytest

from ming.eval.extract import extract_choice

ABCDE = {k: f"选项{k}的内容" for k in "ABCDE"}
ABCD = {k: f"option {k} text" for k in "ABCD"}

CASES_ZH = [
    ("答案：B", "B"),
    ("答案：B\n理由：婚前医学检查对患有指定传染病在传染", "B"),
    ("答案是C。", "C"),
    ("正确答案为 D", "D"),
    ("正确答案是（E）", "E"),
    ("【答案】A\n【解析】本题考查……", "A"),
    ("故选B。", "B"),
    ("本题应选C项。", "C"),
    ("根据题意，最佳答案为：D。因为……", "D"),
    ("B", "B"),
    ("B.", "B"),
    ("(C)", "C"),
    ("D. 梳状肌", "D"),
    ("E、以上都是", "E"),
    ("Ｂ", "B"),  # full-width letter
    ("答案：Ｃ", "C"),
    ("选项D正确，其余选项均错误。", "D"),
    ("B选项是正确的", "B"),
    ("分析：A错误，因为……；C正确。", "C"),
    ("我选择A。", "A"),
    ("**B**", "B"),
    ("答案：\n\nC", "C"),
    ("这道题的答案应该是 B，因为高盐饮食会升高血压。", "B"),
    ("答案：C，D错误", "C"),
    ("B项", "B"),
]

CASES_MULTI = [
    ("答案：ABD", "ABD"),
    ("答案：A、B、D", "ABD"),
    ("答案是A，B，D", "ABD"),
    ("ACD", "ACD"),
    ("A、C", "AC"),
    ("正确答案为 B 和 E", "BE"),
    ("答案：DBA", "ABD"),  # sorted
    ("答案：A、A、C", "AC"),  # deduplicated
]

CASES_EN = [
    ("Answer: D\n\nThe likely mechanism of action of the beta-2 agonist", "D"),
    ("The answer is (B).", "B"),
    ("The correct answer is C. Bartonella henselae", "C"),
    ("Answer: A", "A"),
    ("A. Bartonella henselae", "A"),
    ("B) Streptococcus", "B"),
    ("I would choose D because the patient has", "D"),
    ("Option C is correct.", "C"),
    ("The best answer is: **B**", "B"),
    ("answer: c", None),  # a lower-case letter is not an answer letter
]

UNPARSED = [
    "",
    "   ",
    "我不确定这道题的答案。",
    "A previously healthy boy presents with fever.",  # English article, not option A
    "The answer depends on the clinical context.",  # "a" in prose is no letter
    "答案：F",  # not one of the options
    "这个问题需要结合临床具体分析，建议咨询医生。",
    "X. Bubonic plague",
    "B超检查显示肝脏正常",  # B超 is an ultrasound, not option B
]


@pytest.mark.parametrize("text,want", CASES_ZH)
def test_chinese_phrasings(text, want):
    ex = extract_choice(text, ABCDE)
    assert ex.letters == want, (text, ex)


@pytest.mark.parametrize("text,want", CASES_MULTI)
def test_multi_answer(text, want):
    assert extract_choice(text, ABCDE).letters == want


@pytest.mark.parametrize("text,want", CASES_EN)
def test_english_phrasings(text, want):
    assert extract_choice(text, ABCD).letters == want


@pytest.mark.parametrize("text", UNPARSED)
def test_unparsed_is_never_guessed(text):
    ex = extract_choice(text, ABCDE if any("\u4e00" <= c <= "\u9fff" for c in text) else ABCD)
    assert ex.letters is None and ex.rule == "unparsed" and not ex.parsed


def test_letter_outside_options_is_not_taken():
    # four options: E is not one of them, even in an explicit answer
    assert extract_choice("答案：E", ABCD).letters is None
    assert extract_choice("答案：E", ABCDE).letters == "E"


def test_more_than_five_options():
    opts = {k: f"药物{k}" for k in "ABCDEFG"}
    assert extract_choice("答案：G", opts).letters == "G"
    assert extract_choice("答案：A、F", opts).letters == "AF"


def test_option_text_when_no_letter():
    opts = {"A": "不宜结婚", "B": "可结婚，同时治疗", "C": "暂缓结婚，需先治疗", "D": "可先结婚，不宜生育"}
    ex = extract_choice("应当暂缓结婚，需先治疗，治愈后再评估。", opts)
    assert ex.letters == "C" and ex.rule == "option_text"
    # two options quoted: ambiguous, so unparsed
    assert extract_choice("不宜结婚，或者可先结婚，不宜生育", opts).letters is None


def test_explicit_marker_beats_leading_letter():
    # a reply that starts with one letter but states another as the answer
    assert extract_choice("A项不对。答案：C", ABCDE).letters == "C"


@pytest.mark.parametrize("text,done", [
    ("答案：B", False),                      # the line may go on ("答案：BD")
    ("答案：B\n", True),
    ("答案：BD\n理由：", True),
    ("Answer: C\nBecause", True),
    ("首先分析题干，\n", False),             # reasoning first: keep generating
    ("我认为是B\n", False),                  # no explicit answer marker: not an answer line
    ("B\n", False),
])
def test_answer_line_complete(text, done):
    from ming.eval.extract import answer_line_complete

    assert answer_line_complete(text, ABCDE) is done
