"""Shared fixtures: a real Qwen tokenizer (read from the embedded GGUF), a throwaway byte-level BPE
for Bloom, and tiny random Qwen2 / Bloom checkpoints (2 layers, hidden 16) built once per session.

Tests run with their own MING_HOME (a temporary folder) so the GGUFs, tokenizers and adapters they convert do
not pile up in the user's cache; the embedded model, its converted copy and the built llama.cpp wheels are the
user's (linked, prepared once per machine by `bash scripts/setup.sh`). MING_KB is the ten-disease test KB."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def _test_home() -> None:
    from ming import envs
    from ming.models import embedded

    real = envs.ming_home()
    home = Path(tempfile.mkdtemp(prefix="ming-test-home-"))
    atexit.register(shutil.rmtree, home, True)
    (home / "converted").mkdir()
    for shared in ("models", "wheels", *(f"converted/{m.name}" for m in embedded.MODELS.values())):
        (real / shared).mkdir(parents=True, exist_ok=True)
        (home / shared).symlink_to(real / shared, target_is_directory=True)
    os.environ["MING_HOME"] = str(home)


_test_home()

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a stray download fails loudly
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# consult mode (chat, serve, web page, eval) reasons over the ten-disease test KB, not ../shared/data's 8.8k
# diseases (tests that need another KB or none set MING_KB themselves)
os.environ["MING_KB"] = str(Path(__file__).parent / "fixtures" / "kb_tiny")
# `ming triage` asks the embedded 1.5B where no rule fires by default; tests of the rules run them alone (the
# tests of the model step pass --model, and test_triage_cli_default_asks_the_embedded_model sets it back to auto)
os.environ["MING_TRIAGE_MODEL"] = "none"
# chat, serve and `ming triage` run the triage probe (the embedded 0.5B) by default where it can run; the tests
# that are not about it leave it off (tests/test_probe_triage.py turns it on)
os.environ["MING_TRIAGE_PROBE"] = "none"

import pytest  # noqa: E402

BLOOM_CORPUS = [
    "USER: 我最近总是头痛，怎么办？ ASSISTANT: 头痛的原因很多，请问持续多久了？</s>",
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "高血压患者应该低盐饮食，规律服药，定期监测血压。糖尿病需要控制血糖。",
    "发热、咳嗽、咽痛是上呼吸道感染的常见症状，多喝水，注意休息。",
    "hello world, this is a tiny corpus for a throwaway tokenizer. 胸痛 出汗 呼吸困难",
] * 20


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen2 tokenizer of the embedded model (extracted from its GGUF once, then cached)."""
    from ming import models

    return models.load_tokenizer(models.embedded_ref())


@pytest.fixture(scope="session")
def bloom_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(BLOOM_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    return fast


def _save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory, qwen_tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(qwen_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=qwen_tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return _save(Qwen2ForCausalLM(cfg), qwen_tokenizer, tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory, bloom_tokenizer):
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    cfg = BloomConfig(vocab_size=len(bloom_tokenizer), hidden_size=16, n_layer=2, n_head=2,
                      eos_token_id=bloom_tokenizer.eos_token_id, pad_token_id=bloom_tokenizer.pad_token_id)
    return _save(BloomForCausalLM(cfg), bloom_tokenizer, tmp_path_factory.mktemp("tiny-bloom"))


@pytest.fixture(scope="session")
def tiny_qwen_engine(tiny_qwen_dir):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(model_path=str(tiny_qwen_dir), backend="hf", device="cpu"))


@pytest.fixture(scope="session")
def tiny_bloom_engine(tiny_bloom_dir):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(model_path=str(tiny_bloom_dir), backend="hf", device="cpu"))


@pytest.fixture(scope="session")
def cut_rules(tmp_path_factory):
    """The packaged triage rules with only the toxicology rules left: silent on a stroke told in plain words (the
    model triage steps' tests: a step alone must catch it)."""
    import yaml

    from ming.safety import triage as tri_mod

    src = Path(tri_mod.__file__).parent / "rules" / "triage.yaml"
    spec = yaml.safe_load(src.read_text(encoding="utf-8"))
    spec["rules"] = [r for r in spec["rules"] if r["id"].startswith("TOX")]
    keep = {r["id"] for r in spec["rules"]}
    spec["vetoes"] = [v for v in spec.get("vetoes", []) if set(v["rules"]) <= keep]
    path = tmp_path_factory.mktemp("rules") / "tox_only.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path
