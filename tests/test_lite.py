"""MING-lite runs by name (`--model ming-lite`: the packaged adapter on the embedded 0.5B, run by llama.cpp); the
default model is the one the measurement chose (docs/models.md), and `--model base` is the embedded model under it;
training never starts from the adapter by accident; the shipped files are what the model card says; the data
recipe that trains it puts the right answer under every letter equally often."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ming import envs, lite, models
from ming.data.sources import get_converter
from ming.data.sources._common import SourceContext
from ming.errors import ModelNotFoundError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_lite(monkeypatch, tmp_path):
    monkeypatch.setattr(lite, "ADAPTER_DIR", tmp_path / "missing")


def test_ming_lite_by_name_is_the_adapter_on_the_0_5b():
    if not lite.available():
        pytest.skip("this checkout has no trained MING-lite adapter yet (bash scripts/ming_lite.sh)")
    ref = models.resolve("ming-lite")
    assert ref.kind == "lora" and ref.display == "ming-lite" and ref.base.embedded and ref.base.spec == lite.BASE
    assert models.resolve("lite").path == ref.path
    # its adapter_config names "embedded" as base: that name still means the 0.5B it was trained on
    assert models.resolve(str(lite.ADAPTER_DIR)).base.path == models.resolve("0.5b").path


def test_default_is_not_ming_lite_and_base_is_the_default_without_adapter():
    assert models.named_default_key() != lite.NAME  # MING-lite loses to its base on the dev MCQs (docs/models.md)
    default = models.resolve(None)
    assert default.kind == "gguf" and default.embedded and default.spec == models.DEFAULT_MODEL
    assert models.resolve("default").path == default.path == models.resolve("base").path


def test_without_the_adapter_lite_is_a_clear_error(no_lite):
    assert models.resolve(None).kind == "gguf"
    with pytest.raises(ModelNotFoundError, match="ming_lite.sh"):
        models.resolve("ming-lite")


def test_training_starts_from_the_base_not_the_default():
    from ming.train.config import TrainConfig
    from ming.train.model import start_ref

    ref = start_ref(TrainConfig())  # the default config ...
    assert ref.kind == "gguf" and ref.embedded  # ... starts from an untouched embedded model, never an adapter
    assert ref.spec == "0.5b" and ref.path == models.resolve("0.5b").path  # the small one: CPU-trainable
    named = start_ref(TrainConfig(model_path="1.5b"))
    assert named.spec == "1.5b" and named.path == models.resolve("base").path  # the default's base, by name


def test_shipped_adapter_is_small_bf16_with_a_model_card():
    if not lite.available():
        pytest.skip("no trained MING-lite adapter in this checkout")
    from safetensors import safe_open

    cfg = json.loads((lite.ADAPTER_DIR / "adapter_config.json").read_text())
    assert cfg["r"] <= 16 and cfg["base_model_name_or_path"] == "embedded" and cfg["peft_type"] == "LORA"
    assert models.embedded_key(cfg["base_model_name_or_path"]) == lite.BASE
    path = lite.ADAPTER_DIR / "adapter_model.safetensors"
    assert path.stat().st_size < 20e6
    with safe_open(str(path), framework="pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in list(f.keys())[:4]} == {"torch.bfloat16"}
    card = lite.model_card().read_text(encoding="utf-8")
    for words in ("Research use only", "请勿商用", "Data mix actually used", "Limitations", "base vs MING-lite"):
        assert words in card, words


@pytest.mark.slow
def test_ming_chat_with_no_arguments_talks_to_the_default_and_lite_by_name_on_llamacpp():
    pytest.importorskip("llama_cpp")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, "-m", "ming", "chat", "--max-new-tokens", "24", "--temperature", "0",
                        "--once", "感冒了应该注意什么？"], capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    default = models.resolve(None)
    assert f"loaded {default.describe()}" in r.stderr and "with llama.cpp" in r.stderr
    answer = r.stdout.split("明医:", 1)[1]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in answer)
    if not lite.available():
        return
    named = subprocess.run([sys.executable, "-m", "ming", "chat", "--model", "ming-lite", "--max-new-tokens", "4",
                            "--temperature", "0", "--once", "你好"], capture_output=True, text=True, timeout=900,
                           env=env)
    assert named.returncode == 0 and "loaded ming-lite (LoRA on embedded:" in named.stderr


def _exam_rows(n: int) -> list[dict]:
    """n single-answer items whose right answer is always A (the skew a model could learn), explanations that
    name letters the way CMExam does, and one multi-answer item."""
    rows = []
    for i in range(n):
        opts = {k: f"选项{k}{i}" for k in "ABCDE"}
        rows.append({"id": f"t-{i}", "question": f"第{i}题：下列哪项正确？", "options": opts, "answer": "A",
                     "explanation": f"{opts['A']}正确（A对BCDE错），故选A。"})
    rows.append({"id": "t-multi", "question": "多选：哪些正确？", "options": {"A": "甲", "B": "乙", "C": "丙", "D": "丁"},
                 "answer": "ABD", "explanation": ""})
    rows.append({"id": "t-vitamin", "question": "夜盲症缺乏什么？", "options": {"A": "维生素A", "B": "维生素C"},
                 "answer": "A", "explanation": "夜盲症是维生素A缺乏所致。"})
    return rows


def _exam_options_of_the_recipe() -> dict:
    recipe = yaml.safe_load((ROOT / "configs" / "data" / "ming-lite.yaml").read_text(encoding="utf-8"))
    src = recipe["subsets"]["exam_qa"]["sources"][0]
    assert src["kind"] == "exam_mcq"
    return dict(src.get("options") or {})


def _convert(tmp_path: Path, rows: list[dict], options: dict) -> list[dict]:
    f = tmp_path / "exam.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    ctx = SourceContext(name="cmexam_qa", kind="exam_mcq", subset="exam_qa", category="knowledge_qa", options=options)
    return list(get_converter("exam_mcq").iter_records([f], ctx))


def test_ming_lite_recipe_puts_the_answer_under_every_letter_equally(tmp_path):
    options = _exam_options_of_the_recipe()
    assert options.get("shuffle_options") is True
    rows = _exam_rows(500)
    recs = _convert(tmp_path, rows, options)
    by_id = {r["meta"]["origin"].split(":")[-1]: r for r in recs}
    single = [r for r in recs if len(r["meta"]["answer"]) == 1 and r["meta"]["options_shuffled"]]
    letters = Counter(r["meta"]["answer"] for r in single)
    assert len(single) == 500 and set(letters) == set("ABCDE")
    assert all(70 <= letters[k] <= 130 for k in "ABCDE"), letters  # 100 each expected; all were A before
    for r in single[:50]:  # the reply names the moved option: same text under the new letter, reason renamed
        user, reply = r["messages"][0]["content"], r["messages"][1]["content"]
        k = r["meta"]["answer"]
        i = int(user.split("第", 1)[1].split("题", 1)[0])
        assert f"{k}. 选项A{i}" in user and reply.startswith(f"答案：{k}（{k}. 选项A{i}）")
        assert f"（{k}对" in reply and f"故选{k}" in reply
    multi = by_id["501"]
    assert multi["meta"]["options_shuffled"] and len(multi["meta"]["answer"]) == 3
    opts = dict(line.split(". ", 1) for line in multi["messages"][0]["content"].splitlines()[-4:])
    assert sorted(opts[k] for k in multi["meta"]["answer"]) == sorted(["甲", "乙", "丁"])
    vitamin = by_id["502"]  # "维生素A" is not an option letter: the item keeps its order and stays right
    assert vitamin["meta"]["options_shuffled"] is False and vitamin["meta"]["answer"] == "A"
    again = _convert(tmp_path, rows, options)  # seeded by the item: the same build on every machine
    assert [r["messages"] for r in again] == [r["messages"] for r in recs]


def test_real_cmexam_train_letters_are_balanced_after_the_shuffle(tmp_path):
    d = envs.data_dir()
    if d is None or not (d / "cmexam" / "train.jsonl").is_file():
        pytest.skip("no shared data folder with cmexam/train.jsonl")
    recs = _convert(tmp_path, [json.loads(x) for x in (d / "cmexam" / "train.jsonl").read_text().splitlines()[:1500]],
                    _exam_options_of_the_recipe())
    single = Counter(r["meta"]["answer"] for r in recs if len(r["meta"]["answer"]) == 1)
    n = sum(single.values())
    shuffled = sum(r["meta"]["options_shuffled"] for r in recs)
    assert shuffled >= 0.8 * len(recs)  # most explanations name letters in a form that is renamed
    assert max(single.values()) / n < 0.23 and min(single.values()) / n > 0.17, single
