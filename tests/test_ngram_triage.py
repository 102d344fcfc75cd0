"""The character n-gram triage step (ming.safety.ngram_triage): its features and trainer on small texts written
here, its file, then the packaged classifier in the policy, `ming triage`, `ming chat` and `ming serve`. Its quality
across presentations and writers is measured in bench/triage_ngram.py / docs/triage.md."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ming.errors import MingError
from ming.safety import ngram_triage
from ming.safety.ngram_triage import NGRAM_FILE, NgramModel, NgramTriage, fit, grams, vectorize, vocabulary

# written for these tests (not taken from any set): the rules below are cut down so that they miss STROKE
STROKE = "我老婆说话突然颠三倒四，右边胳膊也使不上劲"
ROUTINE = "嗓子有点痒，咳了两天，没有发烧，吃点什么药好"
EDUCATION = "心梗有哪些早期症状？"


# -- features, trainer and file -------------------------------------------------------------------------------

def test_grams_are_lowercased_character_1_to_3_grams_with_space_runs_as_one():
    g = grams("AB  c")
    assert g["a"] == 1 and g["ab"] == 1 and g["b c"] == 1 and g["  "] == 0 and g[" "] == 1
    assert sum(g.values()) == 4 + 3 + 2  # "ab c": 4 + 3 + 2 grams
    assert grams("头疼头疼")["头疼"] == 2


def test_vocabulary_keeps_grams_in_enough_texts_with_smoothed_idf():
    vocab, idf = vocabulary(["胸痛", "胸闷", "头痛"], min_df=2)
    assert sorted(vocab) == ["痛", "胸"]
    assert idf[vocab["胸"]] == pytest.approx(math.log(4 / 3) + 1)
    (v,) = vectorize(["胸痛痛"], vocab, idf)
    assert sum(x * x for x in v.values()) == pytest.approx(1.0)  # L2-normalised
    assert v[vocab["痛"]] > v[vocab["胸"]]  # 1 + ln 2 against 1 (same idf)


def _toy():
    """A separable toy set: emergencies say 突然 or 昏迷, routine ones 有点 or 两天."""
    pos = ["突然胸口剧痛", "人突然昏迷了", "突然说不出话", "他昏迷不醒", "突然喘不上气", "孩子昏迷抽搐"]
    neg = ["有点咳嗽", "嗓子有点疼", "拉肚子两天", "头有点晕两天了", "鼻塞两天", "有点便秘"]
    return pos + neg, [1] * len(pos) + [0] * len(neg)


def test_fit_reaches_the_optimum_of_l2_logistic_regression():
    texts, y = _toy()
    vocab, idf = vocabulary(texts, min_df=1)
    rows = vectorize(texts, vocab, idf)
    w, b = fit(rows, y, len(vocab), c=10.0)
    A = np.zeros((len(rows), len(vocab)))
    for i, r in enumerate(rows):
        for j, x in r.items():
            A[i, j] = x
    p = 1 / (1 + np.exp(-(A @ w + b)))
    grad_w = 10.0 * A.T @ (p - np.array(y)) + w  # the objective's gradient: zero at the optimum
    assert np.abs(grad_w).max() < 1e-4 and abs(10.0 * (p - np.array(y)).sum()) < 1e-4
    assert ((p >= 0.5) == np.array(y, bool)).all()
    with pytest.raises(MingError, match="both classes"):
        fit(rows, [1] * len(rows), len(vocab))


def test_model_file_round_trip_and_clear_errors(tmp_path):
    texts, y = _toy()
    m = NgramModel.train(texts, y, c=10.0, min_df=1, threshold=0.7, provenance={"messages": len(texts)})
    path = m.save(tmp_path / "n.json")
    back = NgramModel.load(path)
    assert back.threshold == 0.7 and back.provenance == {"messages": len(texts)}
    assert back.p("他突然昏迷") == pytest.approx(m.p("他突然昏迷"), abs=1e-5) and back.p("他突然昏迷") > 0.5
    with pytest.raises(MingError, match="no n-gram triage classifier at .*bench/triage_ngram.py --save"):
        NgramModel.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MingError, match="cannot read the n-gram triage classifier"):
        NgramModel.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "ming-triage-probe/1"}), encoding="utf-8")
    with pytest.raises(MingError, match="not a ming n-gram triage classifier"):
        NgramModel.load(tmp_path / "other.json")
    d = json.loads(path.read_text(encoding="utf-8"))
    del d["bias"]
    (tmp_path / "part.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(MingError, match="incomplete"):
        NgramModel.load(tmp_path / "part.json")
    d = json.loads(path.read_text(encoding="utf-8")) | {"threshold": 1.5}
    (tmp_path / "thr.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(MingError, match="bad numbers"):
        NgramModel.load(tmp_path / "thr.json")


def test_resolve_follows_flag_then_environment(monkeypatch):
    monkeypatch.delenv("MING_TRIAGE_NGRAM", raising=False)
    assert ngram_triage.resolve(None) is True and ngram_triage.resolve(None, safety="off") is False
    monkeypatch.setenv("MING_TRIAGE_NGRAM", "off")
    assert ngram_triage.resolve(None) is False and ngram_triage.resolve(True) is True
    monkeypatch.setenv("MING_TRIAGE_NGRAM", "sometimes")
    with pytest.raises(MingError, match="MING_TRIAGE_NGRAM='sometimes': use on or none"):
        ngram_triage.resolve(None)


# -- the packaged classifier ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def judge():
    return NgramTriage()


def test_the_packaged_classifier_says_what_it_was_trained_on(judge):
    m = judge.model
    assert 0.5 < m.threshold < 1.0 and len(m.vocab) > 5000
    prov = m.provenance
    assert sum(prov["sets"].values()) == prov["messages"] > 3000 and prov["presentations"] >= 60
    assert prov["oof_auc"] > 0.95 and "leave-presentation-out" in prov["threshold_rule"]


def test_it_scores_an_emergency_high_and_routine_text_low(judge):
    hi, lo = judge.score(STROKE), judge.score(ROUTINE)
    assert hi.step == "ngram" and hi.p_yes >= judge.threshold > lo.p_yes
    assert judge.score(EDUCATION).p_yes < judge.threshold
    # symptoms spread over two messages: the earlier one is read with the newest
    two = judge.assess(["我老婆说话突然颠三倒四", "右边胳膊也使不上劲"])
    assert two.fired and two.threshold == judge.threshold and two.to_dict()["step"] == "ngram"


def test_it_reads_a_huge_message_by_its_tail_and_rejects_empty_ones(judge):
    v = judge.assess(["我最近睡眠不好。" * 5000 + STROKE])
    assert v.prompt_tokens <= ngram_triage.MAX_CHARS + 2 and v.fired and v.seconds < 1.0  # 2: the cut mark
    with pytest.raises(MingError, match="empty message"):
        judge.score("   ")
    with pytest.raises(MingError, match="without a user message"):
        judge.assess([])
    with pytest.raises(MingError, match="threshold is a probability"):
        NgramTriage(threshold=2.0)


def test_policy_escalates_on_the_ngram_step_where_the_rules_are_silent(judge, cut_rules):
    from ming.safety.policy import MODEL_RULE_ID, SafetyPolicy
    from ming.safety.triage import Triage

    policy = SafetyPolicy(triage=Triage.from_file(cut_rules))
    d = policy.check([{"role": "user", "content": STROKE}], judge=judge)
    assert d.action == "escalate" and d.rule_ids[0] == MODEL_RULE_ID and d.triage_step == "model"
    assert d.model_triage["step"] == "ngram" and d.model_triage["fired"] and "120" in d.prefix
    assert policy.check([{"role": "user", "content": STROKE}]).action != "escalate"  # the rules alone miss it
    d = policy.check([{"role": "user", "content": EDUCATION}], judge=judge)
    assert d.model_triage is None and d.action != "escalate"  # knowledge questions are not asked


def test_triage_cli_runs_it_by_default_and_keeps_its_jsonl(tmp_path, capfd, monkeypatch, cut_rules):
    from ming.cli.main import main

    monkeypatch.delenv("MING_TRIAGE_NGRAM", raising=False)
    f = tmp_path / "m.jsonl"
    f.write_text("\n".join([json.dumps({"id": "s", "text": STROKE}, ensure_ascii=False), EDUCATION, ROUTINE]) + "\n",
                 encoding="utf-8")
    assert main(["triage", "--rules", str(cut_rules), "--no-escalation", str(f)]) == 0
    cap = capfd.readouterr()
    out = [json.loads(x) for x in cap.out.splitlines()]
    assert "the n-gram classifier where no rule fires" in cap.err
    assert out[0]["id"] == "s" and out[0]["emergency"] and out[0]["rule_ids"] == ["MODEL-TRIAGE"]
    assert out[0]["model"]["step"] == "ngram" and out[0]["model"]["fired"]
    assert "model" not in out[1] and not out[1]["emergency"]
    assert out[2]["model"]["step"] == "ngram" and not out[2]["emergency"]
    assert set(out[2]) == {"emergency", "rule_ids", "categories", "model"}
    assert main(["triage", "--rules", str(cut_rules), "--no-escalation", "--ngram", "none", str(f)]) == 0
    plain = [json.loads(x) for x in capfd.readouterr().out.splitlines()]
    assert [r["emergency"] for r in plain] == [False, False, False] and all("model" not in r for r in plain)
    assert main(["triage", "--ngram-threshold", "1.5", str(f)]) == 2
    assert "--ngram-threshold is a probability in [0, 1], got 1.5" in capfd.readouterr().err


def test_chat_runs_it_by_default_and_says_so(tiny_qwen_dir):
    import os

    env = {k: v for k, v in os.environ.items() if k != "MING_TRIAGE_NGRAM"}
    args = [sys.executable, "-m", "ming", "chat", "--model-path", str(tiny_qwen_dir), "--max-new-tokens", "4",
            "--once", ROUTINE]
    for extra, on in (([], True), (["--no-triage-ngram"], False)):
        r = subprocess.run(args + extra, capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert ("n-gram triage on" in r.stdout + r.stderr) is on


def test_a_turn_escalates_on_it_and_serve_runs_it_by_default(cut_rules, tiny_qwen_engine, monkeypatch):
    from ming.engine.base import GenerationConfig
    from ming.respond import Pipeline
    from ming.safety.policy import SafetyPolicy
    from ming.safety.stage import SafetyStage
    from ming.safety.triage import Triage
    from ming.serve.app import serve_stages
    from ming.serve.settings import ServeSettings

    stage = SafetyStage(SafetyPolicy(triage=Triage.from_file(cut_rules)))  # the n-gram step is the default
    turn = Pipeline(tiny_qwen_engine, [stage]).prepare([{"role": "user", "content": STROKE}],
                                                      GenerationConfig(max_new_tokens=4, temperature=0))
    s = turn.meta["safety"]
    assert s["action"] == "escalate" and s["triage_step"] == "model" and s["triage_model"]["step"] == "ngram"
    assert turn.lead and turn.lead[0].text.startswith(SafetyPolicy().model_escalation().splitlines()[0])

    monkeypatch.delenv("MING_TRIAGE_NGRAM", raising=False)
    on = [st for st in serve_stages(ServeSettings()) if st.name == "safety"][0]
    off = [st for st in serve_stages(ServeSettings(triage_ngram=False)) if st.name == "safety"][0]
    assert on.ngram is True and off.ngram is False


def test_the_bench_reproduces_the_packaged_classifier(tmp_path):
    """bench/triage_ngram.py --save on the labelled sets (and the shared data's unlabelled real questions) gives the
    packaged file's vocabulary and threshold."""
    from ming.envs import data_dir

    sets = Path(__file__).resolve().parents[1] / "bench" / "data" / "triage"
    if not any(sets.glob("*_set.jsonl")):
        pytest.skip("no labelled triage sets")
    d = data_dir()
    if not d or not all((d / s / "train.jsonl").is_file() for s in ("huatuo26m_qa", "toyhom_qa")):
        pytest.skip("the packaged classifier's unlabelled negatives come from the shared data, which is not here")
    out = tmp_path / "n.json"
    r = subprocess.run([sys.executable, str(sets.parents[1] / "triage_ngram.py"), "--save", str(out), "--c", "30",
                        "--save-only"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    new, shipped = NgramModel.load(out), NgramModel.load(NGRAM_FILE)
    assert new.vocab == shipped.vocab and new.threshold == pytest.approx(shipped.threshold, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(new.weights, shipped.weights)) < 1e-3
    assert new.provenance["unlabelled_negatives"]["messages"] == shipped.provenance["unlabelled_negatives"]["messages"]


def test_a_text_too_short_to_judge_is_left_to_the_rules(judge):
    """Below MIN_CHARS letters the classifier has seen no labelled message and its p is noise (我发烧了: 0.94 before
    this gate); such a text is not scored, and the short emergencies are the rules' (they fire on these)."""
    from ming.safety.triage import default_triage

    for short in ("我发烧了", "我胸口疼", "头很痛！！"):
        v = judge.assess([short])
        assert v.p_yes == 0.0 and not v.fired
    assert judge.assess(["我发烧了", "三天了，最高39度"]).p_yes > 0  # with its context it is long enough
    tri = default_triage()
    assert all(tri.check(t).emergency for t in ("我喘不上气", "我呕血了", "他昏迷了", "孩子抽了"))


# written for these tests: English messages, which the classifier (trained on Chinese) does not read
ENGLISH_ROUTINE = "I have had a mild cough for three days, what should I take"
ENGLISH_EMERGENCY = "my boyfriend took heroin and now he won't respond to me"


def test_a_mostly_english_message_is_left_to_the_rules_and_the_model_step(judge):
    """Before this gate the classifier scored English as noise: 0.9+ for a mild cough (17 of 20 routine English
    messages escalated, docs/triage.md). A text with more Latin letters than Chinese characters is not scored;
    `Unreadable` asks another step about exactly those texts and passes on the rest; FirstOf skips a pass."""
    from ming.safety.probe_triage import FirstOf

    for text in (ENGLISH_ROUTINE, ENGLISH_EMERGENCY, "xiong kou tong, chu leng han, tou yun"):
        v = judge.assess([text])
        assert v.p_yes == 0.0 and not v.fired
    assert judge.assess([STROKE]).fired  # Chinese is read as before, mixed-in Latin letters too
    assert judge.assess(["我爸血压180/110，头很痛，CT还没做"]).p_yes > 0
    english_only = ngram_triage.Unreadable(judge)
    assert english_only.assess([STROKE]) is None and english_only.assess(["ok"]) is None  # Chinese; too short
    assert english_only.assess([ENGLISH_ROUTINE]) is not None
    first = FirstOf([judge, english_only])
    assert first.assess([STROKE]).fired and first.assess([ROUTINE]).step == "ngram"  # the pass is skipped


def test_chat_and_serve_ask_the_model_about_english_only_on_the_measured_engine(tiny_qwen_engine):
    """The English step goes in only for an engine the yes/no was measured on (the embedded 1.5B on llama.cpp); a
    tiny test model keeps the n-gram step alone, and --triage-model (the yes/no on every message) replaces it."""
    from types import SimpleNamespace

    from ming.safety.model_triage import measured_engine
    from ming.safety.policy import SafetyPolicy
    from ming.safety.stage import SafetyStage
    from ming.serve.app import serve_stages
    from ming.serve.settings import ServeSettings

    assert measured_engine(SimpleNamespace(name="embedded:qwen2.5-coder-1.5b-instruct-q4_k_m", backend="llamacpp",
                                           lora_path=None))
    assert not measured_engine(SimpleNamespace(name="embedded:qwen2.5-coder-0.5b-instruct-q4_k_m",
                                               backend="llamacpp", lora_path=None))
    assert not measured_engine(SimpleNamespace(name="1.5b", backend="hf", lora_path=None))
    assert not measured_engine(tiny_qwen_engine)
    stage = SafetyStage(SafetyPolicy(), english_model=True)
    stage.bind(tiny_qwen_engine)
    assert isinstance(stage.judge, NgramTriage) and not stage.reads_english
    (on,) = [st for st in serve_stages(ServeSettings()) if st.name == "safety"]
    (named,) = [st for st in serve_stages(ServeSettings(triage_model=True)) if st.name == "safety"]
    (off,) = [st for st in serve_stages(ServeSettings(triage_ngram=False)) if st.name == "safety"]
    assert on.english_model and not named.english_model and not off.english_model
    from ming.cli.serve import _english_on

    assert not _english_on([stage]) and not _english_on([SimpleNamespace()])
    assert _english_on([SimpleNamespace(reads_english=True)])  # the serve banner
