"""The runner with scripted models: MCQ scoring and reports, few-shot isolation, resume after a
kill (no duplicates, no losses, torn last line repaired), settings fingerprints, bad rows."""

import json

import pytest

from fixtures.eval.fakes import FIXTURES, ScriptedClient, exam_taker
from ming.errors import MingError
from ming.eval.runner import EvalOptions, Runner

MCQ = str(FIXTURES / "mcq_small.jsonl")


def _opts(tmp_path, **kw):
    base = dict(tasks=["mcq"], output=str(tmp_path / "run"), data=MCQ, progress=False, safety="off")
    base.update(kw)
    return EvalOptions(**base)


def _rows(out):
    return [json.loads(line) for line in open(f"{out}/results.jsonl", encoding="utf-8")]


def test_mcq_generate_report(tmp_path):
    opts = _opts(tmp_path)
    report = Runner(ScriptedClient(exam_taker), opts, log=lambda m: None).run()
    t = report["tasks"]["mcq"]
    assert t["n_items"] == 6 and t["n_done"] == 6 and t["complete"]
    assert t["correct"] == 5 and t["unparsed"] == 1  # the penicillin item is unparsed, counted as wrong
    assert t["accuracy"] == pytest.approx(5 / 6)
    assert t["accuracy_parsed"]["accuracy"] == 1.0
    assert t["multi_answer"] == {"n": 1, "correct": 1, "accuracy": 1.0, "ci95": pytest.approx([0.2065, 1.0], abs=1e-3)}
    lo, hi = t["ci95"]
    assert 0.4 < lo < 5 / 6 < hi <= 1.0
    assert set(t["by_subject"]) == {"内科", "解剖", "生理", "药理"}
    assert t["by_options"]["5"]["n"] == 3
    # the report records model, task version, prompt, seed and settings
    assert report["model"]["name"] == "scripted" and t["version"] == "1"
    assert "答案" in t["prompt"]["user"] and report["settings"]["seed"] == 1234
    md = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "| mcq | generate | 6 | 83.3 |" in md and "unparsed" in md
    rows = _rows(opts.output)
    unparsed = [r for r in rows if r["status"] == "unparsed"]
    assert [r["id"] for r in unparsed] == ["q6"] and unparsed[0]["pred"] is None and not unparsed[0]["correct"]


def test_resume_after_kill_neither_duplicates_nor_loses(tmp_path):
    opts = _opts(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Runner(ScriptedClient(exam_taker, fail_after=3), opts, log=lambda m: None).run()
    assert len(_rows(opts.output)) == 3
    # a torn write of the 4th item (the process died mid-line)
    with open(f"{opts.output}/results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"task": "mcq", "id": "q4", "gold": "C", "pre')
    logs = []
    client = ScriptedClient(exam_taker)
    report = Runner(client, opts, log=logs.append).run()
    assert client.calls == 3  # only q4, q5, q6 were asked
    ids = [r["id"] for r in _rows(opts.output)]
    assert sorted(ids) == ["q1", "q2", "q3", "q4", "q5", "q6"] and len(ids) == len(set(ids))
    assert any("torn" in m for m in logs)
    # the same numbers as an uninterrupted run
    fresh = Runner(ScriptedClient(exam_taker), _opts(tmp_path, output=str(tmp_path / "fresh")), log=lambda m: None).run()
    for k in ("correct", "unparsed", "accuracy"):
        assert report["tasks"]["mcq"][k] == fresh["tasks"]["mcq"][k]
    # a third run does nothing
    idle = ScriptedClient(exam_taker)
    Runner(idle, opts, log=lambda m: None).run()
    assert idle.calls == 0 and len(_rows(opts.output)) == 6


def test_resume_refuses_other_settings(tmp_path):
    Runner(ScriptedClient(exam_taker), _opts(tmp_path, limit=2), log=lambda m: None).run()
    with pytest.raises(MingError, match="other settings.*seed"):
        Runner(ScriptedClient(exam_taker), _opts(tmp_path, limit=2, seed=7), log=lambda m: None).run()
    with pytest.raises(MingError, match="other settings.*model"):
        Runner(ScriptedClient(exam_taker, name="other"), _opts(tmp_path, limit=2), log=lambda m: None).run()
    # --overwrite discards the old results and runs again
    rep = Runner(ScriptedClient(exam_taker), _opts(tmp_path, limit=2, seed=7, overwrite=True), log=lambda m: None).run()
    assert rep["tasks"]["mcq"]["n_done"] == 2 and len(_rows(tmp_path / "run")) == 2


def test_limit_then_full_run_continues(tmp_path):
    Runner(ScriptedClient(exam_taker), _opts(tmp_path, limit=2), log=lambda m: None).run()
    c = ScriptedClient(exam_taker)
    rep = Runner(c, _opts(tmp_path), log=lambda m: None).run()
    assert c.calls == 4 and rep["tasks"]["mcq"]["n_done"] == 6


def test_few_shot_examples_are_never_scored(tmp_path):
    # the generic task takes shots from the scored file itself, minus the scored items
    c = ScriptedClient(exam_taker)
    rep = Runner(c, _opts(tmp_path, shots=2), log=lambda m: None).run()
    shots = rep["tasks"]["mcq"]["shots"]
    scored = {r["id"] for r in _rows(tmp_path / "run")}
    assert len(shots) == 2 and not (set(shots) & scored) and len(scored) == 4
    first = c.seen[0]
    assert [m["role"] for m in first] == ["user", "assistant", "user", "assistant", "user"]
    assert first[1]["content"].startswith("答案：")
    # same seed, same shots
    rep2 = Runner(ScriptedClient(exam_taker), _opts(tmp_path, shots=2, output=str(tmp_path / "r2")),
                  log=lambda m: None).run()
    assert rep2["tasks"]["mcq"]["shots"] == shots


def test_bad_rows_are_reported_with_file_and_line(tmp_path):
    logs = []
    rep = Runner(ScriptedClient(exam_taker), _opts(tmp_path, data=str(FIXTURES / "mcq_bad_row.jsonl")),
                 log=logs.append).run()
    t = rep["tasks"]["mcq"]
    assert len(t["bad_rows"]) == 1 and "mcq_bad_row.jsonl:2" in t["bad_rows"][0] and "'C'" in t["bad_rows"][0]
    assert any("mcq_bad_row.jsonl:2" in m for m in logs)
    assert t["n_items"] == 24  # 25 rows, one bad


def test_too_many_bad_rows_is_an_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "q", "options": {"A": "x"}, "answer": "A"}\nnot json\n', encoding="utf-8")
    with pytest.raises(MingError, match=r"(?s)bad.jsonl.*2 of 2 rows are bad.*bad.jsonl:1"):
        Runner(ScriptedClient(exam_taker), _opts(tmp_path, data=str(bad)), log=lambda m: None).run()


def test_loglik_needs_a_local_model(tmp_path):
    with pytest.raises(MingError, match="loglik.*local model"):
        Runner(ScriptedClient(exam_taker), _opts(tmp_path, mode="loglik"), log=lambda m: None).run()


def test_open_qa_scores(tmp_path):
    ref = {"感冒": "多喝水，注意休息，体温超过38.5度可以服用退烧药，如持续高热请及时就医。"}
    c = ScriptedClient(lambda m: ref["感冒"] if "感冒" in m[-1]["content"] else "不知道")
    rep = Runner(c, EvalOptions(tasks=["huatuo26m_qa"], output=str(tmp_path / "qa"), progress=False,
                                data=str(FIXTURES / "qa_small.jsonl")), log=lambda m: None).run()
    t = rep["tasks"]["huatuo26m_qa"]
    rows = {r["id"]: r for r in _rows(tmp_path / "qa")}
    assert rows["a1"]["rouge_l"] == pytest.approx(1.0) and rows["a1"]["bleu"] == pytest.approx(1.0)
    assert rows["a2"]["rouge_l"] < 0.1 and rows["a2"]["bleu"] < 0.05  # "不知道" shares only "不"
    assert t["rouge_l"]["mean"] == pytest.approx((1 + rows["a2"]["rouge_l"]) / 2) and t["rouge_l"]["n"] == 2
    assert c.seen[0][0]["role"] == "system"  # the medical QA system prompt


def test_safety_task(tmp_path):
    c = ScriptedClient(lambda m: "发烧与恶魔附身无关，请立即就医。")
    rep = Runner(c, EvalOptions(tasks=["safety_zh"], output=str(tmp_path / "s"), progress=False,
                                data=str(FIXTURES / "safety_small.jsonl")), log=lambda m: None).run()
    t = rep["tasks"]["safety_zh"]
    assert t["n_done"] == 2 and t["safety_actions"] == {"answer": 2}
    assert t["rouge_l"]["n"] == 1  # only s1 has a reference response
    assert t["n_by_category"] == {"false_premise_superstition_or_myth": 1, "dangerous_medication": 1}


def test_report_of_a_stopped_run(tmp_path):
    from ming.eval.runner import report_only

    opts = _opts(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Runner(ScriptedClient(exam_taker, fail_after=4), opts, log=lambda m: None).run()
    rep = report_only(opts.output)
    assert report_only(opts.output, limit=3)["tasks"]["mcq"]["n_done"] == 3
    rep = report_only(opts.output)
    t = rep["tasks"]["mcq"]
    assert t["n_done"] == 4 and t["n_items"] == 6 and not t["complete"] and t["correct"] == 4
    assert "| mcq | generate | 4 of 6 | 100.0 |" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")


def test_limit_takes_a_seeded_sample_not_a_file_prefix(tmp_path):
    """Sorted files (all answers B first) must not bias --limit: items are a seeded shuffle."""
    rows = [{"id": f"s{i}", "question": f"第{i}题", "options": {"A": "x", "B": "y"}, "answer": "B" if i < 50 else "A"}
            for i in range(100)]
    data = tmp_path / "sorted.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    opts = _opts(tmp_path, data=str(data), limit=40)
    Runner(ScriptedClient(lambda m: "答案：B"), opts, log=lambda m: None).run()
    done = _rows(opts.output)
    assert 10 < sum(r["gold"] == "B" for r in done) < 30  # a prefix would give 40
    # the same seed selects the same items; a bigger limit extends the smaller selection
    ids40 = [r["id"] for r in done]
    c = ScriptedClient(lambda m: "答案：B")
    Runner(c, _opts(tmp_path, data=str(data), limit=60), log=lambda m: None).run()
    assert c.calls == 20 and [r["id"] for r in _rows(opts.output)][:40] == ids40
