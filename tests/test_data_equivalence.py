"""The fast build gives the old build's output: on a few thousand synthetic rows (exact and near duplicates,
chains of them, eval copies, PII, cleaning drops, malformed lines), every record, every count and every input
problem equals the golden output that the build wrote before it was vectorised and parallelised
(tests/fixtures/data/synth_golden.json), with one worker process or two."""

import sys
from pathlib import Path

import pytest

from ming.data.build import build
from ming.data.recipe import load_recipe
from ming.errors import MingError

FIX = Path(__file__).parent / "fixtures" / "data"
sys.path.insert(0, str(FIX))
from synth import assert_matches_golden, write_synth  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "synth"  # meta.origin names the folder: same as the golden run
    return folder, write_synth(folder, 3000)


@pytest.mark.parametrize("workers", [1, 2])
def test_fast_build_equals_the_old_build(synth, tmp_path, workers):
    folder, recipe = synth
    res = build(load_recipe(str(recipe)), tmp_path / "out", data_dir=folder, progress=False, workers=workers,
                log=lambda m: None)
    assert res["sources"]["gen"]["exact_dup"] > 100 and res["sources"]["gen"]["near_dup"] > 100  # it is tested
    assert_matches_golden(tmp_path / "out", res, folder)
    assert res["timing"]["workers"] == workers and set(res["timing"]["stage_seconds"]) >= {
        "read_convert", "clean", "exact_hash", "minhash", "decontaminate", "dedup_spill", "mix_write", "audit"}


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_input_past_the_limit_stops_the_build_in_every_mode(synth, tmp_path, workers):
    folder, recipe = synth
    with pytest.raises(MingError) as e:
        build(load_recipe(str(recipe)), tmp_path / "out", data_dir=folder, progress=False, workers=workers,
              max_error_rate=0.001, log=lambda m: None)
    assert "source qa: 2 of 1002 input rows are bad" in str(e.value) and "qa.jsonl:401: malformed JSON" in str(e.value)
    assert not (tmp_path / "out" / "train.jsonl").exists() and not (tmp_path / "out" / ".work").exists()


def test_sources_of_several_files_convert_in_the_workers_with_the_same_result(synth, tmp_path):
    """With several input files a source's files are converted in the workers, one per task; the output,
    the counts and the file:line problems are those of converting them in order in one process."""
    folder, recipe = synth
    lines = (folder / "general.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):
        (parts / f"general-{i}.jsonl").write_text("".join(lines[i * 700:(i + 1) * 700]), encoding="utf-8")
    text = recipe.read_text(encoding="utf-8").replace("paths: [general.jsonl]", f"paths: ['{parts}/general-*.jsonl']")
    multi = tmp_path / "multi.yaml"
    multi.write_text(text, encoding="utf-8")
    res = {}
    for workers in (1, 2):
        res[workers] = build(load_recipe(str(multi)), tmp_path / f"out{workers}", data_dir=folder, progress=False,
                             workers=workers, log=lambda m: None)
    for split in ("train.jsonl", "dev.jsonl"):
        assert (tmp_path / "out1" / split).read_bytes() == (tmp_path / "out2" / split).read_bytes()
    assert res[1]["sources"] == res[2]["sources"] and res[1]["sources"]["gen"]["near_dup"] > 100
    assert res[1]["input_problems"] == res[2]["input_problems"]
    assert any("general-1.jsonl:" in e for e in res[2]["input_problems"]["examples"])


RAW = FIX / "raw"


def _with_kg_sources(tmp_path):
    """The fixture recipe plus the knowledge-graph sources of the other kinds (instructions, self-medication)."""
    text = (FIX / "recipe.yaml").read_text(encoding="utf-8")
    text = text.replace("      - {name: gen, kind: general_instruct, paths: [general.jsonl], licence: test}",
                        "      - {name: gen, kind: general_instruct, paths: [general.jsonl], licence: test}\n"
                        "      - {name: kgt, kind: medical_instruct, paths: [kg], options: {mode: kg_tasks}, licence: t}")
    text = text.replace("      - {name: saf, kind: safety, paths: [safety.jsonl], licence: test}",
                        "      - {name: saf, kind: safety, paths: [safety.jsonl], licence: test}\n"
                        "      - {name: selfmed, kind: safety, paths: [kg], options: {mode: kg_self_medication}, "
                        "licence: t}")
    path = tmp_path / "kg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_files_read_in_pieces_and_graphs_in_parts_give_the_same_build(tmp_path, monkeypatch, workers):
    """A JSONL file read in many small pieces (line numbers carried over: file:line problems unchanged) and a
    knowledge graph converted in parts give the build of whole files, record for record and count for count."""
    from ming.data import pipeline

    recipe = _with_kg_sources(tmp_path)
    whole = build(load_recipe(str(recipe)), tmp_path / "whole", data_dir=RAW, progress=False, workers=1,
                  log=lambda m: None)
    monkeypatch.setattr(pipeline, "SPAN_BYTES", 300)
    monkeypatch.setattr(pipeline, "KG_PARTS", 3)
    parts = build(load_recipe(str(recipe)), tmp_path / "parts", data_dir=RAW, progress=False, workers=workers,
                  log=lambda m: None)
    for split in ("train.jsonl", "dev.jsonl"):
        assert (tmp_path / "whole" / split).read_bytes() == (tmp_path / "parts" / split).read_bytes()
    assert parts["sources"] == whole["sources"] and parts["input_problems"] == whole["input_problems"]
    assert whole["sources"]["kgt"]["kept"] > 0 and whole["sources"]["selfmed"]["kept"] > 0
    assert whole["input_problems"]["examples"]  # the fixtures' bad lines, still named by file:line
    assert parts["cleaning"] == whole["cleaning"] and parts["audit"] == whole["audit"]


def test_bad_input_contract_holds_when_files_are_read_in_pieces(synth, tmp_path, monkeypatch):
    from ming.data import pipeline

    folder, recipe = synth
    monkeypatch.setattr(pipeline, "SPAN_BYTES", 2000)
    with pytest.raises(MingError) as e:
        build(load_recipe(str(recipe)), tmp_path / "out", data_dir=folder, progress=False, workers=2,
              max_error_rate=0.001, log=lambda m: None)
    assert "source qa: 2 of 1002 input rows are bad" in str(e.value) and "qa.jsonl:401: malformed JSON" in str(e.value)
    assert "qa.jsonl:802: malformed JSON" in str(e.value)
    assert not (tmp_path / "out" / "train.jsonl").exists() and not (tmp_path / "out" / ".work").exists()


def test_a_source_of_several_graphs_and_small_read_blocks_give_the_same_build(tmp_path, monkeypatch):
    """A knowledge-graph source with two folders converts each folder as one task (each graph is loaded in one
    process only); with one worker or two, and with JSONL read in tiny blocks, the build is the same."""
    from ming.data import rawio

    kg2 = tmp_path / "kg2"
    kg2.mkdir()
    for f in ("entities.jsonl", "triples.jsonl"):  # a second, different graph: every disease renamed
        (kg2 / f).write_text((RAW / "kg" / f).read_text(encoding="utf-8").replace("炎", "症"), encoding="utf-8")
    text = _with_kg_sources(tmp_path).read_text(encoding="utf-8")
    assert "paths: [kg], options: {mode: kg_tasks}" in text
    recipe = tmp_path / "two-graphs.yaml"
    recipe.write_text(text.replace("paths: [kg], options: {mode: kg_tasks}",
                                   f"paths: [kg, '{kg2}'], options: {{mode: kg_tasks}}"), encoding="utf-8")
    res = {}
    for name, workers, block in (("one", 1, None), ("two", 2, None), ("blocks", 2, 97)):
        if block:
            monkeypatch.setattr(rawio, "READ_BLOCK", block)
        res[name] = build(load_recipe(str(recipe)), tmp_path / name, data_dir=RAW, progress=False, workers=workers,
                          log=lambda m: None)
    for name in ("two", "blocks"):
        for split in ("train.jsonl", "dev.jsonl"):
            assert (tmp_path / "one" / split).read_bytes() == (tmp_path / name / split).read_bytes()
        assert res[name]["sources"] == res["one"]["sources"]
        assert res[name]["input_problems"] == res["one"]["input_problems"]
    train = (tmp_path / "one" / "train.jsonl").read_text(encoding="utf-8")
    assert '"origin":"kg2:' in train and '"origin":"kg:' in train  # both graphs reached the mix
    assert res["one"]["input_problems"]["examples"]  # the fixtures' bad lines, still named by file:line
