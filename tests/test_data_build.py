"""`ming data build / stats / validate / convert` end to end: on the fixtures, and on ../shared/data when present."""

import json
from pathlib import Path

import pytest

from ming.cli.main import main
from ming.envs import data_dir

FIX = Path(__file__).parent / "fixtures" / "data"
RAW = FIX / "raw"
ROOT = Path(__file__).resolve().parents[1]


def build(tmp_path, name="out", *extra):
    out = tmp_path / name
    rc = main(["data", "build", "--recipe", str(FIX / "recipe.yaml"), "--out", str(out), "--data-dir", str(RAW),
               "--no-progress", *extra])
    return rc, out


def lines(p):
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]


def test_build_on_fixtures_writes_mix_stats_report(tmp_path, capsys):
    rc, out = build(tmp_path)
    assert rc == 0
    recs = lines(out / "train.jsonl")
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    report = (out / "report.md").read_text(encoding="utf-8")
    assert len(recs) == stats["mix"]["total"] > 0
    # category shares: weights 13 / 2 / 3 / 2 of 20 -> exact on the auto total
    total = stats["plan"]["total"]
    for cat, cd in stats["plan"]["categories"].items():
        assert abs(stats["mix"]["category"][cat] - cd["share"] * total) <= 1
    assert stats["audit"] == {"records": total, "schema_errors": 0, "exact_duplicates": 0, "upsampling_repeats": 0,
                              "eval_contaminated": 0, "examples": []}
    # the exam item that near-duplicates the eval question was removed, and counted
    assert stats["sources"]["exam"]["eval_contaminated"] == 1
    assert not any("腋测法" in m["content"] for r in recs for m in r["messages"])
    # bad input rows are reported with file:line and counted
    assert stats["sources"]["exam"]["bad_input"] == 2
    assert any("exam.jsonl:6" in e for e in stats["input_problems"]["examples"])
    # PII removed from the doctor QA question
    assert stats["cleaning"]["pii_replaced"].get("phone") == 1
    assert not any("13812345678" in m["content"] for r in recs for m in r["messages"])
    for heading in ("## Categories", "## Subsets", "## Sources", "## Drops by reason", "## Audit", "## Length"):
        assert heading in report
    assert "limited by" in capsys.readouterr().out
    for r in recs:
        assert r["meta"]["licence"] == "test" and r["category"] and r["subset"]


def test_build_is_deterministic(tmp_path):
    _, a = build(tmp_path, "a")
    _, b = build(tmp_path, "b")
    assert (a / "train.jsonl").read_bytes() == (b / "train.jsonl").read_bytes()


def test_build_without_audit_writes_the_same_mix_and_statistics(tmp_path):
    """The audit tasks also count the mix statistics; without the audit the build counts them itself: the same
    files, the same statistics (key order included), no audit."""
    _, a = build(tmp_path, "a")
    _, b = build(tmp_path, "b", "--no-audit")
    for name in ("train.jsonl", "dev.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    sa, sb = (json.loads((d / "stats.json").read_text(encoding="utf-8")) for d in (a, b))
    assert json.dumps(sa["mix"]) == json.dumps(sb["mix"]) and sa["mix"]["total"] > 0
    assert sa["audit"]["records"] == sa["mix"]["total"] and sb["audit"] == {}


def test_build_fails_past_the_error_rate(tmp_path, capsys):
    rc, out = build(tmp_path, "strict", "--max-error-rate", "0.1")
    assert rc == 2 and not (out / ".work").exists() and not (out / "train.jsonl").exists()
    err = capsys.readouterr().err
    assert "source exam: 2 of 7 input rows are bad" in err and "exam.jsonl:6" in err and "--max-error-rate" in err


def test_bad_recipe_and_missing_path_are_user_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("subsets: {x: {category: nope, weight: 1, sources: []}}", encoding="utf-8")
    assert main(["data", "build", "--recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "category 'nope' is not one of" in capsys.readouterr().err
    assert main(["data", "build", "--recipe", str(FIX / "recipe.yaml"), "--out", str(tmp_path / "o"),
                 "--data-dir", str(tmp_path), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_stats_validate_convert(tmp_path, capsys):
    _, out = build(tmp_path)
    capsys.readouterr()
    assert main(["data", "stats", str(out / "train.jsonl")]) == 0
    assert "knowledge_qa" in capsys.readouterr().out
    assert main(["data", "validate", str(out / "train.jsonl")]) == 0
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "source": "s", "messages": [{"role": "user", "content": "q"}]}\n{oops\n',
                      encoding="utf-8")
    assert main(["data", "validate", str(broken)]) == 1
    o = capsys.readouterr().out
    assert f"{broken}:1: last message must be from the assistant" in o and f"{broken}:2: malformed JSON" in o
    conv = tmp_path / "conv.jsonl"
    assert main(["data", "convert", "--from", "alpaca", str(RAW / "general.jsonl"), str(conv), "--source", "mine"]) == 0
    got = lines(conv)
    assert len(got) == 2 and all(r["source"] == "mine" for r in got)  # empty output and the ShareGPT row: reported
    assert "not alpaca" in capsys.readouterr().err


@pytest.mark.skipif(data_dir() is None, reason="../shared/data not present")
def test_small_build_on_real_data(tmp_path):
    """configs/data/small.yaml with every source thinned to 1 row in 10 (1 disease in 100): every converter on real
    data, the real eval files, in a few seconds."""
    import yaml

    recipe = yaml.safe_load((ROOT / "configs" / "data" / "small.yaml").read_text(encoding="utf-8"))
    recipe["total"] = 500
    for sub in recipe["subsets"].values():
        for src in sub["sources"]:
            kg = src["paths"] == ["medical_kg"]
            src.setdefault("options", {})["select"] = {"mod": 100 if kg else 10, "rem": 0}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "real"
    assert main(["data", "build", "--recipe", str(path), "--out", str(out), "--no-progress"]) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["mix"]["total"] == 500
    assert stats["audit"]["exact_duplicates"] == 0 and stats["audit"]["eval_contaminated"] == 0
    assert stats["audit"]["schema_errors"] == 0
    assert stats["dedup"]["eval_contaminated"] > 0  # CMExam val overlaps other benchmarks' test items
    for cat, cd in stats["plan"]["categories"].items():
        assert abs(stats["mix"]["category"][cat] / 500 - cd["share"]) < 0.002
    assert len(stats["eval"]["files"]) >= 15
    assert all(s["bad_input"] == 0 for s in stats["sources"].values())


@pytest.mark.slow
@pytest.mark.skipif(data_dir() is None, reason="../shared/data not present")
def test_default_build_on_real_data(tmp_path):
    out = tmp_path / "default"
    assert main(["data", "build", "--out", str(out), "--no-progress"]) == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["audit"]["exact_duplicates"] == 0 and stats["audit"]["eval_contaminated"] == 0
    for cat, cd in stats["plan"]["categories"].items():
        assert abs(stats["mix"]["category"][cat] / stats["mix"]["total"] - cd["share"]) < 0.001


def test_subset_system_prompt_is_added_to_its_records(tmp_path):
    """`system: consult` on a subset puts the consultation prompt ming chat uses on each of its records."""
    import json

    import yaml

    from ming.data.build import build
    from ming.data.recipe import parse_recipe
    from ming.prompts import CONSULT

    raw = Path(__file__).parent / "fixtures" / "data" / "raw"
    recipe = parse_recipe(yaml.safe_load(f"""
name: sys
total: 3
dev_fraction: 0.0
eval_files: []
subsets:
  consultation:
    category: multiturn_diagnosis
    weight: 1
    system: consult
    sources: [{{name: d, kind: dialogue, paths: ["{raw / 'dialogue.jsonl'}"]}}]
"""))
    build(recipe, tmp_path / "out", data_dir=raw, progress=False)
    recs = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert recs and all(r["messages"][0] == {"role": "system", "content": CONSULT} for r in recs)


def test_upsampled_repeats_are_rewritten_split_and_audited_apart(tmp_path):
    """With `max_upsample` a stratum repeats its records: a repeat gets `meta.repeat` and an id ending in #r<n>,
    the split follows the original id, and the audit counts repeats apart from duplicates; one worker and two
    write the same files."""
    import yaml

    raw = yaml.safe_load((FIX / "recipe.yaml").read_text(encoding="utf-8"))
    raw["dev_fraction"] = 0.2
    for sub in raw["subsets"].values():
        sub["max_upsample"] = 3
    recipe = tmp_path / "up.yaml"
    recipe.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert main(["data", "build", "--recipe", str(recipe), "--out", str(out), "--data-dir", str(RAW),
                     "--no-progress", "--workers", workers]) == 0
        outs.append(out)
    for name in ("train.jsonl", "dev.jsonl"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    recs = lines(outs[0] / "train.jsonl") + lines(outs[0] / "dev.jsonl")
    stats = json.loads((outs[0] / "stats.json").read_text(encoding="utf-8"))
    reps = [r for r in recs if r["meta"].get("repeat")]
    assert reps and all(r["id"].endswith(f"#r{r['meta']['repeat']}") for r in reps)
    assert stats["audit"]["upsampling_repeats"] == len(reps) and stats["audit"]["exact_duplicates"] == 0
    dev_ids = {r["id"].split("#")[0] for r in lines(outs[0] / "dev.jsonl")}
    train_ids = {r["id"].split("#")[0] for r in lines(outs[0] / "train.jsonl")}
    assert dev_ids and not dev_ids & train_ids  # a record and its repeats land in the same split
