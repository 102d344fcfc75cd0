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


def test_already_normal_texts_skip_the_work_with_the_same_result():
    """`normalize_text` returns a text untouched when one regex finds nothing to change; on random texts made
    of every kind of character it treats (spaces of all kinds, tabs, CR, controls, full-width and invisible
    characters, newlines) that shortcut gives what the full normalisation gives."""
    import random
    import unicodedata

    from ming.data.clean import _normalize_slow

    alphabet = list("头痛发热ab1。，. ") + ["\n", "\n\n", "\t", "\r", "\r\n", "  ", "\u3000", "\u00a0", "\u2028", "\x85",
                                           "\x0b", "\x1f", "\x7f", "\u200b", "\ufeff", "Ａ", "１", "\u2003", "e\u0301"]
    rng = random.Random(0)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert normalize_text(text) == _normalize_slow(unicodedata.normalize("NFC", text)), repr(text)


def test_language_of_many_texts_at_once_equals_one_at_a_time():
    import random

    from ming.data.clean import languages_of

    alphabet = list("头痛发热abcXYZ 1。，.-") + ["\n", "é", "ß", "中文", "word ", "\u3400", "\uf900", "\u4dbf", "[", "`", "@"]
    rng = random.Random(1)
    texts = ["", "abc", "头痛"] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(5000)]
    assert languages_of(texts) == [language_of(t) for t in texts]
    assert set(languages_of(texts)) == {"zh", "en", "mixed", "none"}


def test_cleaning_a_batch_equals_cleaning_one_record_at_a_time():
    texts = ["头痛三天，伴有发热。", "What is this?", "", "  ", "头痛 1381234567８ 怎么办", "abc 中文 mixed words here",
             "a" * 5000, "正常的回答。"]
    recs = [rec(u, a) for u in texts for a in texts]
    one, many = Cleaner(CleanConfig()), Cleaner(CleanConfig())
    import copy

    want = [r for r in (one.clean(copy.deepcopy(x)) for x in recs) if r is not None]
    assert many.clean_many(copy.deepcopy(recs)) == want
    assert (many.drops, many.pii, many.seen, many.kept) == (one.drops, one.pii, one.seen, one.kept)
    assert len(want) and len(many.drops) >= 3


def test_texts_found_plain_in_a_batch_need_no_normalisation_and_no_pii_scrub():
    """`plain_texts` marks a text plain only when `normalize_text` and `scrub_pii` return it unchanged; on random
    texts of every kind of character they treat (spaces, newlines, controls, full-width, invisible, combining
    and composing characters, Hangul, digits of several scripts, PII cues) it never marks one that changes, and
    it marks most ordinary Chinese text plain."""
    import random

    from ming.data.clean import plain_texts

    alphabet = list("头痛发热ab1。，. @:/wWQqVvx微信") + [
        "\n", "\n\n", "\t", "\r", "  ", " ", "\u3000", "\u00a0", "\u2028", "\x85", "\x0b", "\x1f", "\x7f", "\u200b",
        "\ufeff", "Ａ", "１", "\u2003", "e\u0301", "\u0301", "é", "\u1100", "\u1161", "\u11a8", "가", "\u212b",
        "\uf900", "٣", "১২৩৪", "1381234567８", "2023", "www.", ".com", "://", "QQ", "wx", "\U0001f600", "\ud800"]
    rng = random.Random(2)
    texts = ["", "头痛三天，伴有发热。", "请问这是什么病？\n需要做什么检查？"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(30000)]
    flags = plain_texts(texts)
    for text, plain in zip(texts, flags):
        if plain:
            assert normalize_text(text) == text and scrub_pii(text) == text, repr(text)
    assert flags[:3] == [True, True, True] and 0 < sum(flags) < len(texts)
