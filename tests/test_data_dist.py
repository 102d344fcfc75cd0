"""`ming data build --engine dask` in local mode: the same output as the local build (the golden output of
tests/fixtures/data/synth_golden.json), and the same bad-input contract."""

import sys
from pathlib import Path

import pytest

from ming.cli.main import main
from ming.data.recipe import load_recipe

pytest.importorskip("dask", reason="the distributed build needs Dask: pip install 'ming[dist]'")

from ming.data.dist import build_dask  # noqa: E402

FIX = Path(__file__).parent / "fixtures" / "data"
sys.path.insert(0, str(FIX))
from synth import assert_matches_golden, write_synth  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist") / "synth"
    return folder, write_synth(folder, 3000)


def test_dask_build_equals_the_local_build(synth, tmp_path):
    folder, recipe = synth
    res = build_dask(load_recipe(str(recipe)), tmp_path / "out", data_dir=folder, progress=False, workers=2,
                     log=lambda m: None)
    assert res["timing"]["mode"] == "dask local"
    assert_matches_golden(tmp_path / "out", res, folder)


def test_dask_build_cli_and_bad_input_contract(synth, tmp_path, capsys):
    folder, recipe = synth
    rc = main(["data", "build", "--engine", "dask", "--workers", "2", "--recipe", str(recipe), "--out",
               str(tmp_path / "o"), "--data-dir", str(folder), "--no-progress", "--max-error-rate", "0.001"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "source qa: 2 of 1002 input rows are bad" in err and "qa.jsonl:401: malformed JSON" in err
    assert "qa.jsonl:802: malformed JSON" in err and not (tmp_path / "o" / "train.jsonl").exists()
    assert not (tmp_path / "o" / ".work").exists()


@pytest.mark.slow  # starts a dask.distributed cluster: ~20 s on a loaded 2-core machine
def test_dask_build_on_a_distributed_cluster(synth, tmp_path):
    """The cluster path (`--scheduler tcp://...`): a LocalCluster of two worker processes, talked to over TCP."""
    distributed = pytest.importorskip("distributed", reason="--scheduler needs dask.distributed")
    folder, recipe = synth
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        res = build_dask(load_recipe(str(recipe)), tmp_path / "out", data_dir=folder, progress=False,
                         scheduler=c.scheduler_address, log=lambda m: None)
    assert res["timing"]["mode"] == f"dask {c.scheduler_address}"
    assert_matches_golden(tmp_path / "out", res, folder)
