"""The triage probe (ming.safety.probe_triage): the numpy classifier and its file on their own, then the packaged
probe on the real embedded 0.5B (skipped where it or llama.cpp is not installed) in the policy, `ming triage`,
`ming chat` and `ming serve`. Its quality across writers is measured in bench/triage_probe.py / docs/triage.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ming.errors import MingError
from ming.safety import probe_triage
from ming.safety.probe_triage import PROBE_FILE, FirstOf, Probe, ProbeTriage, fit, predict, wrap

# written for these tests (not taken from any set): the rules below are cut down so that they miss it
STROKE = "我老婆说话突然颠三倒四，右边胳膊也使不上劲"
ROUTINE = "嗓子有点痒，咳了两天，没有发烧，吃点什么药好"
EDUCATION = "心梗有哪些早期症状？"


# -- the classifier and its file ----------------------------------------------------------------------------------

def test_fit_separates_and_returns_raw_feature_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)) * [1, 10, 0.1, 1, 1] + [0, 50, 3, 0, 0]  # unscaled, offset features
    y = (X[:, 0] + 0.3 * (X[:, 1] - 50) / 10 > 0).astype(float)
    w, b = fit(X, y, lam=1.0)
    p = predict((w, b), X)
    assert ((p >= 0.5) == y).mean() > 0.95
    assert abs(w[0]) > 5 * abs(w[3]) and w.shape == (5,)  # the informative feature carries the weight
    with pytest.raises(MingError, match="both classes"):
        fit(X, np.ones(len(X)), 1.0)


def test_probe_file_round_trip_and_clear_errors(tmp_path):
    probe = Probe(np.array([0.5, -1.25, 3.0]), -0.75, 0.8, "m.gguf", 123, 30.0, {"messages": 3})
    path = probe.save(tmp_path / "p.json")
    back = Probe.load(path)
    assert np.allclose(back.weights, probe.weights) and back.bias == probe.bias and back.threshold == 0.8
    assert back.p(np.array([1.0, 1.0, 1.0])) == pytest.approx(1 / (1 + np.exp(-(0.5 - 1.25 + 3.0 - 0.75))))
    with pytest.raises(MingError, match="no triage probe at .*bench/triage_probe.py --save"):
        Probe.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MingError, match="cannot read the triage probe"):
        Probe.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}), encoding="utf-8")
    with pytest.raises(MingError, match="not a ming triage probe"):
        Probe.load(tmp_path / "other.json")
    d = json.loads(path.read_text(encoding="utf-8"))
    del d["bias"]
    (tmp_path / "part.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(MingError, match="incomplete"):
        Probe.load(tmp_path / "part.json")
    d = json.loads(path.read_text(encoding="utf-8")) | {"threshold": 1.5}
    (tmp_path / "thr.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(MingError, match="bad numbers"):
        Probe.load(tmp_path / "thr.json")


def test_the_packaged_probe_says_what_it_was_trained_on():
    from ming.models import embedded

    probe = Probe.load(PROBE_FILE)
    m = embedded.get(probe_triage.MODEL)
    assert probe.dims == m.hidden and (probe.model_file, probe.model_bytes) == (m.filename, m.size)
    assert 0.5 < probe.threshold < 1.0
    prov = probe.provenance
    assert sum(prov["sets"].values()) == prov["messages"] > 3000 and prov["presentations"] >= 60
    assert prov["oof_auc"] > 0.95 and "leave-presentation-out" in prov["threshold_rule"]


def test_the_wrapper_is_one_chatml_user_turn_with_the_context_first():
    assert wrap("现在喘不上气", ["昨天开始胸闷"]) == \
        "<|im_start|>user\n昨天开始胸闷\n现在喘不上气<|im_end|>\n<|im_start|>assistant\n"


def test_first_of_stops_at_the_first_that_fires():
    from ming.safety.model_triage import Verdict

    class Fixed:
        def __init__(self, p, step):
            self.p, self.step, self.asked = p, step, 0

        def assess(self, turns):
            self.asked += 1
            return Verdict(self.p, 0.0, 0.0, 0.01, 5, 0.5, self.step)

    a, b = Fixed(0.9, "probe"), Fixed(0.1, "yesno")
    assert FirstOf([a, b]).assess(["x"]).step == "probe" and b.asked == 0
    a.p = 0.2
    v = FirstOf([a, b]).assess(["x"])
    assert v.step == "yesno" and not v.fired and (a.asked, b.asked) == (2, 1)


def test_resolve_follows_flag_then_environment(monkeypatch):
    monkeypatch.setenv("MING_TRIAGE_PROBE", "none")
    assert probe_triage.resolve(None) == (False, "MING_TRIAGE_PROBE=none")
    assert probe_triage.resolve(False)[0] is False and probe_triage.resolve(True, safety="off")[0] is False
    monkeypatch.setenv("MING_TRIAGE_PROBE", "auto")  # the default: off (the n-gram step is the default model step)
    assert probe_triage.resolve(None) == (False, "off by default")
    monkeypatch.setenv("MING_TRIAGE_PROBE", "sometimes")
    with pytest.raises(MingError, match="MING_TRIAGE_PROBE='sometimes': use auto, on or none"):
        probe_triage.resolve(None)


# -- the packaged probe on the embedded 0.5B ----------------------------------------------------------------------

_OK, _WHY = probe_triage.available()
needs_model = pytest.mark.skipif(not _OK, reason=f"the triage probe needs {_WHY}")


@pytest.fixture(scope="module")
def judge():
    if not _OK:
        pytest.skip(f"the triage probe cannot run: {_WHY}")
    return ProbeTriage(threads=2)


def test_probe_scores_an_emergency_high_and_routine_text_low(judge):
    hi, lo = judge.score(STROKE), judge.score(ROUTINE)
    assert hi.step == "probe" and hi.p_yes >= judge.threshold > lo.p_yes
    assert 0 < hi.seconds < 30 and 10 < hi.prompt_tokens < 100
    # symptoms spread over two messages: the earlier one is read with the newest
    two = judge.assess(["我老婆说话突然颠三倒四", "右边胳膊也使不上劲"])
    assert two.fired and two.threshold == judge.threshold and two.to_dict()["step"] == "probe"


def test_probe_reads_a_huge_message_by_its_tail_and_rejects_empty_ones(judge):
    v = judge.assess(["我最近睡眠不好。" * 2000 + STROKE])
    assert v.prompt_tokens <= probe_triage.MAX_CHARS and v.fired  # the newest text is what is kept
    with pytest.raises(MingError, match="empty message"):
        judge.score("   ")
    with pytest.raises(MingError, match="without a user message"):
        judge.assess([])


def test_policy_escalates_on_the_probe_where_the_rules_are_silent(judge, cut_rules):
    from ming.safety.policy import MODEL_RULE_ID, SafetyPolicy
    from ming.safety.triage import Triage

    policy = SafetyPolicy(triage=Triage.from_file(cut_rules))
    d = policy.check([{"role": "user", "content": STROKE}], judge=judge)
    assert d.action == "escalate" and d.rule_ids[0] == MODEL_RULE_ID and d.triage_step == "model"
    assert d.model_triage["step"] == "probe" and d.model_triage["fired"] and "120" in d.prefix
    assert policy.check([{"role": "user", "content": STROKE}]).action != "escalate"  # the rules alone miss it
    d = policy.check([{"role": "user", "content": EDUCATION}], judge=judge)
    assert d.model_triage is None and d.action != "escalate"  # knowledge questions are not asked


def test_triage_cli_probe_on_none_and_default(tmp_path, capfd, monkeypatch, cut_rules):
    """--probe on (with the n-gram step off, so that the probe is what is asked), none, and the default (off)."""
    from ming.cli.main import main

    if not _OK:
        pytest.skip(f"the triage probe cannot run: {_WHY}")
    f = tmp_path / "m.jsonl"
    f.write_text("\n".join([json.dumps({"id": "s", "text": STROKE}, ensure_ascii=False), EDUCATION, ROUTINE]) + "\n",
                 encoding="utf-8")
    monkeypatch.setenv("MING_TRIAGE_PROBE", "auto")  # the default outside the tests
    assert main(["triage", "--rules", str(cut_rules), "--no-escalation", "--ngram", "none", str(f)]) == 0
    assert "triage probe" not in capfd.readouterr().err  # off by default
    assert main(["triage", "--rules", str(cut_rules), "--no-escalation", "--ngram", "none", "--probe", "on",
                 str(f)]) == 0
    cap = capfd.readouterr()
    out = [json.loads(x) for x in cap.out.splitlines()]
    assert "the triage probe on the embedded 0.5b" in cap.err
    assert out[0]["id"] == "s" and out[0]["emergency"] and out[0]["rule_ids"] == ["MODEL-TRIAGE"]
    assert out[0]["model"]["step"] == "probe" and out[0]["model"]["fired"]
    assert "model" not in out[1] and not out[1]["emergency"]
    assert out[2]["model"]["step"] == "probe" and not out[2]["emergency"]
    assert main(["triage", "--rules", str(cut_rules), "--no-escalation", "--probe", "none", "--ngram", "none",
                 str(f)]) == 0
    plain = [json.loads(x) for x in capfd.readouterr().out.splitlines()]
    assert [r["emergency"] for r in plain] == [False, False, False] and all("model" not in r for r in plain)
    assert main(["triage", "--probe", "on", "--probe-threshold", "1.5", str(f)]) == 2
    assert "--probe-threshold is a probability in [0, 1], got 1.5" in capfd.readouterr().err


def test_chat_runs_the_probe_when_asked_and_says_so(tiny_qwen_dir):
    """`ming chat` on any model: the probe is off by default (MING_TRIAGE_PROBE unset), on with the flag."""
    import os
    import subprocess
    import sys

    if not _OK:
        pytest.skip(f"the triage probe cannot run: {_WHY}")
    env = {k: v for k, v in os.environ.items() if k != "MING_TRIAGE_PROBE"}
    args = [sys.executable, "-m", "ming", "chat", "--model-path", str(tiny_qwen_dir), "--max-new-tokens", "4",
            "--once", ROUTINE]
    for extra, on in (([], False), (["--triage-probe"], True)):
        r = subprocess.run(args + extra, capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert ("triage probe on" in r.stdout + r.stderr) is on
        assert "model triage on" not in r.stdout + r.stderr  # the yes/no is not asked beside it unless named


def test_a_turn_escalates_on_the_probe_and_serve_turns_it_on(judge, cut_rules, tiny_qwen_engine, monkeypatch):
    """The safety stage with the probe (as chat and serve build it): the escalation leads the answer and the
    metadata names the step; `ming serve` runs it with --triage-probe, not by default."""
    from ming.engine.base import GenerationConfig
    from ming.respond import Pipeline
    from ming.safety.policy import SafetyPolicy
    from ming.safety.stage import SafetyStage
    from ming.safety.triage import Triage
    from ming.serve.app import serve_stages
    from ming.serve.settings import ServeSettings

    stage = SafetyStage(SafetyPolicy(triage=Triage.from_file(cut_rules)), probe=True, ngram=False)
    turn = Pipeline(tiny_qwen_engine, [stage]).prepare([{"role": "user", "content": STROKE}],
                                                      GenerationConfig(max_new_tokens=4, temperature=0))
    s = turn.meta["safety"]
    assert s["action"] == "escalate" and s["triage_step"] == "model" and s["triage_model"]["step"] == "probe"
    assert turn.lead and turn.lead[0].text.startswith(SafetyPolicy().model_escalation().splitlines()[0])
    assert stage.judge.probe.threshold == judge.threshold

    monkeypatch.delenv("MING_TRIAGE_PROBE")
    off = [st for st in serve_stages(ServeSettings()) if st.name == "safety"][0]
    on = [st for st in serve_stages(ServeSettings(triage_probe=True)) if st.name == "safety"][0]
    assert on.probe is True and off.probe is False
