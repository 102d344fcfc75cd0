"""One settings source (ming.config): flags and `--config` YAML of chat, serve, train and eval come from the same
declarations; defaults < YAML < the flags actually given; an unknown YAML key names the known ones. `ming chat`
and `ming serve` are run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fixtures.serve.live import free_port

from ming.cli.main import build_parser, main
from ming.config import ModelOptions, load
from ming.engine.base import GenerationConfig
from ming.eval.runner import EvalOptions
from ming.serve.settings import ServeSettings
from ming.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MING = [sys.executable, "-m", "ming"]


def _parse(*argv):
    return build_parser(list(argv)).parse_args(list(argv))


def test_precedence_defaults_yaml_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("max_new_tokens: 64\ntemperature: 0.2\nbackend: hf\nmode: consult\n", encoding="utf-8")
    a = _parse("chat", "--config", str(y), "--max-new-token", "9", "--template", "qwen")
    gen, model = load(GenerationConfig, a), load(ModelOptions, a)
    assert gen.max_new_tokens == 9  # flag (MING's spelling) over YAML
    assert gen.temperature == 0.2 and model.backend == "hf" and a.mode == "consult"  # YAML over defaults
    assert gen.top_p == GenerationConfig().top_p and model.conv_template == "qwen"
    # flags that were not typed never hide YAML: --no-prefix-cache given, the rest from YAML / defaults
    s = _parse("serve", "--config", str(y), "--no-prefix-cache", "--port", "8123", "--beam-size", "2")
    assert load(ModelOptions, s).prefix_cache is False and s.port == 8123 and load(GenerationConfig, s).num_beams == 2
    assert load(ServeSettings, s).mode == "consult" and load(GenerationConfig, s).max_new_tokens == 64


def test_every_command_takes_flags_from_the_declarations():
    """Each declared field has its flag on the commands that use it (one source, no hand-written copies)."""
    from ming.config import cli_fields

    for command, classes in {"chat": (ModelOptions, GenerationConfig), "serve": (ModelOptions, GenerationConfig,
                                                                                 ServeSettings),
                             "eval": (ModelOptions, EvalOptions), "train": (TrainConfig,)}.items():
        parser = build_parser([command])
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        dests = {a.dest for a in sub._actions}
        for cls in classes:
            for f in cli_fields(cls):
                assert f.name in dests, (command, f.name)
    for spelling in (["--model-path", "m"], ["--conv-template", "bloom"], ["--max-new-token", "3"],
                     ["--beam-size", "2"], ["--temperature", "0"]):
        assert _parse("chat", *spelling)


def test_unknown_yaml_key_names_the_known_ones(tmp_path, capsys):
    y = tmp_path / "bad.yaml"
    y.write_text("max_new_tokns: 7\n", encoding="utf-8")
    for command in ("chat", "serve", "eval"):
        assert main([command, "--config", str(y)]) == 2
        err = capsys.readouterr().err
        assert "max_new_tokns" in err and "known:" in err and "'max_new_tokens'" in err and "'model_path'" in err
        assert "Traceback" not in err


def _run_chat(args, stdin):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(MING + ["chat", *args], input=stdin, capture_output=True, text=True, timeout=600, env=env)


def test_chat_config_yaml_applies_and_a_flag_beats_it(tiny_qwen_dir, tmp_path):
    y = tmp_path / "chat.yaml"
    y.write_text(f"model_path: {tiny_qwen_dir}\nsafety: 'off'\nsystem: 来自配置的系统提示\nmax_new_tokens: 4\n"
                 "temperature: 0\n", encoding="utf-8")
    saved = tmp_path / "a.json"
    r = _run_chat(["--config", str(y), "--plain"], f"你好\n/save {saved}\n")
    assert r.returncode == 0, r.stderr
    a = json.loads(saved.read_text(encoding="utf-8"))
    assert a["system"] == "来自配置的系统提示"  # from the YAML
    saved = tmp_path / "b.json"
    r = _run_chat(["--config", str(y), "--plain", "--system", "来自参数的系统提示"], f"你好\n/save {saved}\n")
    assert r.returncode == 0, r.stderr
    b = json.loads(saved.read_text(encoding="utf-8"))
    assert b["system"] == "来自参数的系统提示"  # the flag beats the YAML
    assert a["messages"][-1]["content"] == b["messages"][-1]["content"]  # same greedy reply (temperature 0 from YAML)


def test_serve_config_yaml_applies_and_a_flag_beats_it(tiny_qwen_dir, tmp_path):
    port = free_port()
    y = tmp_path / "serve.yaml"
    y.write_text(f"model_path: {tiny_qwen_dir}\nport: 1\nsafety: 'off'\nserved_model_name: from-yaml\n"
                 "max_new_tokens: 3\ntemperature: 0\nshutdown_timeout: 1\n", encoding="utf-8")
    env = {**os.environ, "MING_THREADS": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(MING + ["serve", "--config", str(y), "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert p.poll() is None, "server exited early:\n" + p.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:  # the flag's port
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert models["data"][0]["id"] == "from-yaml"
        body = {"messages": [{"role": "user", "content": "头痛怎么办"}]}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120).json()
        assert r["usage"]["completion_tokens"] <= 3  # the YAML's max_new_tokens is the request default
    finally:
        p.terminate()
        p.wait(30)


def test_eval_saves_its_resolved_config(tmp_path):
    """`ming eval` writes eval_config.yaml next to its results; `--config` reads it back unchanged."""
    from ming.config import save

    y = tmp_path / "e.yaml"
    y.write_text("tasks: [mcq]\nlimit: 2\nmode: loglik\n", encoding="utf-8")
    opts = load(EvalOptions, _parse("eval", "--config", str(y), "--output", str(tmp_path / "o"), "--shots", "1"))
    assert (opts.limit, opts.mode, opts.shots, opts.tasks) == (2, "loglik", 1, ["mcq"])
    saved = save(tmp_path / "o" / "eval_config.yaml", opts, ModelOptions(backend="hf"))
    again = _parse("eval", "--config", str(saved))
    assert load(EvalOptions, again) == opts and load(ModelOptions, again).backend == "hf"


@pytest.mark.parametrize("command", ["chat", "serve", "train", "eval"])
def test_help_stays_torch_free(command):
    code = f"import sys; from ming.cli.main import build_parser; build_parser(['{command}']); " \
           "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
