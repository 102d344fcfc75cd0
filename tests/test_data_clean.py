"""Cleaning: Unicode, PII, lengths, language, broken turns — each drop counted by reason."""

from ming.data.clean import CleanConfig, Cleaner, language_of, normalize_text, scrub_pii


def rec(*contents):
    roles = ["user", "assistant"] * 4
    return {"id": "x", "source": "s", "messages": [{"role": r, "content": c} for r, c in zip(roles, contents)]}


def test_normalize_keeps_chinese_punctuation_and_halves_fullwidth_alnum():
    assert normalize_text("Ｈｂ　１２０ｇ／Ｌ，正常。\u200b\r\n\n\n\n下一行  ") == "Hb 120g／L，正常。\n\n下一行"


def test_pii_is_replaced_and_counted():
    from collections import Counter

    c = Counter()
    text = ("电话13812345678或010-12345678，身份证110101199003074514，邮箱a.b@x.com，网址https://x.cn/a?b=1，"
            "微信abc_12345。血压120/80，WBC 5.0×10^9/L，体重65kg。")
    out = scrub_pii(text, c)
    assert "13812345678" not in out and "110101199003074514" not in out and "a.b@x.com" not in out
    assert "https://" not in out and "abc_12345" not in out
    assert "血压120/80" in out and "5.0×10^9/L" in out
    assert c == {"phone": 2, "id_number": 1, "email": 1, "url": 1, "im_account": 1}


def test_language_check():
    assert language_of("头痛三天了，伴有恶心。CT正常。") == "zh"
    assert language_of("I have had a cough for three days.") == "en"


def test_cleaner_drops_by_reason():
    cl = Cleaner(CleanConfig(max_chars=50, min_assistant_chars=2))
    assert cl.clean(rec("头痛怎么办？", "建议休息，必要时就医。")) is not None
    assert cl.clean(rec("头痛怎么办？", "   ")) is None
    assert cl.clean(rec("头痛怎么办？", "好")) is None
    assert cl.clean(rec("头" * 40, "答" * 20)) is None
    assert cl.clean(rec("What is a headache?", "A pain in the head.")) is None
    assert cl.clean(rec("What is a headache?", "A pain in the head."), languages=("en",)) is not None
    assert cl.clean({"id": "x", "source": "s", "messages": [{"role": "assistant", "content": "先说"},
                                                            {"role": "user", "content": "后问"}]}) is None
    assert dict(cl.drops) == {"empty_turn": 1, "too_short": 1, "too_long": 1, "language_en": 1, "bad_structure": 1}
    assert cl.kept == 2 and cl.seen == 7
