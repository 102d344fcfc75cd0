"""`ming eval` command line: list, errors, --config, and the real data files (skipped without them)."""

import json
from pathlib import Path

import pytest

from ming import envs
from ming.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_list(capsys):
    assert main(["eval", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("cmexam", "medqa_mcmle", "cmb", "cmmlu_medical", "medqa_usmle_en", "mcq", "huatuo26m_qa",
                 "toyhom_qa", "safety_zh", "covid_dialogue_zh", "meddialog_cn_100", "cmtmedqa_dialogue", "cmb_clin"):
        assert name in out
    assert main(["eval", "list", "--json"]) == 0
    assert "mcq_dev" in json.loads(capsys.readouterr().out)["suites"]


def test_user_errors_exit_2(capsys, tmp_path):
    assert main(["eval", "nosuchtask", "--output", str(tmp_path)]) == 2
    assert "unknown eval task 'nosuchtask'" in capsys.readouterr().err
    assert main(["eval", "cmexam"]) == 2
    assert "--output DIR is required" in capsys.readouterr().err
    assert main(["eval", "mcq", "--data", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path),
                 "--base-url", "http://127.0.0.1:9", "--api-model", "m"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["eval", "compare", str(tmp_path)]) == 2
    assert "usage: ming eval compare" in capsys.readouterr().err


def test_configs_parse_and_name_known_tasks():
    import yaml

    from ming.eval.runner import EvalOptions
    from ming.config import merge
    from ming.eval.tasks import expand

    for p in sorted((ROOT / "configs" / "eval").glob("*.yaml")):
        opts = merge(EvalOptions, p, {"output": "x"})
        assert expand(",".join(opts.tasks)), p
        assert isinstance(yaml.safe_load(p.read_text(encoding="utf-8")), dict)


@pytest.mark.skipif(envs.data_dir() is None, reason="shared data not found (MING_DATA_DIR)")
def test_every_task_reads_its_real_data():
    from ming.eval.tasks import REGISTRY, get
    from ming.eval.tasks.base import read_rows

    d = envs.data_dir()
    for name in REGISTRY:
        t = get(name)
        if t.dataset is None:
            continue
        rows, problems = read_rows(t.data_path(d), t.kind)
        assert rows and not problems, name
        if t.kind == "consult":
            rows = [r for r in rows if t.keep is None or t.keep(r)]
            cases = [c for c in map(t.to_case, rows) if c]
            assert len(cases) >= 20, name
            if name != "cmtmedqa_dialogue":
                assert sum(1 for c in cases if c.diagnosis) >= 20, name
            assert sum(len(c.findings) for c in cases) / len(cases) >= 3, name


def test_compare_joins_run_folders_and_labels_loglik(tmp_path, capsys):
    """One side may be several run folders (generate + loglik + consultation): rows keep their own labels and each
    side gets a 95% CI."""
    def write(folder, rows):
        folder.mkdir()
        (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    gen = [{"task": "cmb", "id": str(i), "kind": "mcq", "rule": "marker_zh", "correct": i < 6} for i in range(10)]
    ll = [{"task": "cmb", "id": str(i), "kind": "mcq", "rule": "loglik", "correct": i < 3} for i in range(10)]
    con = [{"task": "meddialog_cn_100", "id": str(i), "kind": "consult", "diagnosis_hit": i < 2,
            "coverage": 0.5, "turns": 3} for i in range(10)]
    write(tmp_path / "a-gen", gen)
    write(tmp_path / "a-ll", ll)
    write(tmp_path / "a-con", con)
    write(tmp_path / "b-gen", [dict(r, correct=True) for r in gen])
    write(tmp_path / "b-ll", ll)
    write(tmp_path / "b-con", [dict(r, diagnosis_hit=True) for r in con])
    a = ",".join(str(tmp_path / x) for x in ("a-gen", "a-ll", "a-con"))
    b = ",".join(str(tmp_path / x) for x in ("b-gen", "b-ll", "b-con"))
    assert main(["eval", "compare", a, b, "--json"]) == 0
    rows = {(r["task"], r["metric"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows[("cmb", "accuracy")]["a"] == 0.6 and rows[("cmb", "accuracy")]["b"] == 1.0
    assert rows[("cmb (loglik)", "accuracy")]["delta"] == 0 and rows[("cmb (loglik)", "accuracy")]["p"] == 1.0
    assert rows[("meddialog_cn_100", "diagnosis_accuracy")]["b"] == 1.0
    lo, hi = rows[("cmb", "accuracy")]["a_ci95"]
    assert lo < 0.6 < hi
