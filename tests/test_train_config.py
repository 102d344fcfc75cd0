"""`ming train` settings: defaults < --config YAML < flags; every recipe in configs/train parses; the launcher
builds an `accelerate launch` command with the process counts passed through."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ming.errors import MingError
from ming.train import config as tc

ROOT = Path(__file__).resolve().parents[1]


def _parse(argv):
    from ming.cli.main import build_parser

    return build_parser(["train"]).parse_args(["train", *argv])


def test_defaults_yaml_flags_precedence(tmp_path):
    y = tmp_path / "r.yaml"
    y.write_text("learning_rate: 1.0e-3\nlora_r: 8\nbatch_size: 2\ndata: [a.jsonl, b.jsonl]\n")
    cfg = tc.resolve(_parse(["--config", str(y), "--lora-r", "4", "--output", "o", "--no-group-by-length"]))
    assert cfg.learning_rate == 1e-3  # YAML over default
    assert cfg.lora_r == 4  # flag over YAML
    assert cfg.lora_alpha == 32  # default
    assert cfg.group_by_length is False
    assert cfg.data_files() == ["a.jsonl", "b.jsonl"]
    saved = tc.save(cfg, tmp_path / "out")
    again = tc.resolve(_parse(["--config", str(saved)]))
    assert again == cfg


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(MingError, match="no training data"):
        tc.resolve(_parse(["--output", "o"]))
    y = tmp_path / "bad.yaml"
    y.write_text("learning_rat: 1\n")
    with pytest.raises(MingError, match="unknown settings"):
        tc.resolve(_parse(["--config", str(y)]))
    with pytest.raises(MingError, match="batch_size"):
        tc.resolve(_parse(["--data", "x", "--output", "o", "--batch-size", "0"]))
    with pytest.raises(SystemExit):
        _parse(["--method", "prefix"])


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_parse(recipe):
    cfg = tc.resolve(_parse(["--config", str(recipe), "--data", "x.jsonl", "--output", "o"]))
    assert cfg.method in tc.METHODS


def test_launch_command_passes_processes_through(tmp_path):
    from ming.train import launch

    cfg = tc.TrainConfig(data="x", output=str(tmp_path), launcher="zero3", num_processes=16, num_machines=2,
                         machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29501, dtype="bfloat16")
    cmd = launch.command(cfg, tmp_path / "c.yaml", "cuda")
    joined = " ".join(cmd)
    assert "accelerate.commands.launch" in joined and joined.endswith("--launcher none")
    for flag in ("--num_processes 16", "--num_machines 2", "--machine_rank 1", "--main_process_ip 10.0.0.1",
                 "--main_process_port 29501", "--mixed_precision bf16"):
        assert flag in joined
    assert Path(cmd[cmd.index("--config_file") + 1]).read_text().count("zero_stage: 3") == 1
    for name in ("ddp", "zero2", "zero3", "fsdp"):
        assert launch.config_file(name).is_file()
    with pytest.raises(MingError, match="main-process-ip"):
        launch.command(tc.TrainConfig(data="x", output="o", launcher="ddp", num_machines=2), tmp_path / "c", "cpu")


def test_deepspeed_on_cpu_is_a_clear_error():
    from ming.train import launch

    with pytest.raises(MingError, match="(DeepSpeed|deepspeed)"):
        launch.check(tc.TrainConfig(data="x", output="o", launcher="zero2"), "cpu")


def test_help_is_cheap():
    import subprocess
    import sys

    code = ("import sys; from ming.cli.main import build_parser; build_parser(['train']).parse_args(['train', '-h'])")
    res = subprocess.run([sys.executable, "-c", code + "\n"], capture_output=True, text=True)
    assert "--lora-r" in res.stdout and "--packing" in res.stdout
    probe = "from ming.cli.main import build_parser; build_parser(['train']); import sys; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
