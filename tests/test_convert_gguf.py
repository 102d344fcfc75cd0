"""`ming models convert`: HF checkpoint -> GGUF. The converted file runs on the llama.cpp backend and
gives the transformers model's greedy tokens (f32 exactly; f16 / q8_0 / q4_k_m within tolerance)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from ming.engine import GenerationConfig  # noqa: E402

MSGS = [{"role": "user", "content": "我最近总是头痛，怎么办？"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, qwen_tokenizer):
    from test_prefix_cache_llamacpp import tiny_gguf

    return tiny_gguf(tmp_path_factory, qwen_tokenizer, "f32")


@pytest.fixture(scope="module")
def hf_engine(tiny):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(model_path=str(tiny[0]), backend="hf", device="cpu"))


def _llama(path):
    from ming.config import ModelOptions
    from ming.engine import create_engine

    return create_engine(ModelOptions(model_path=str(path), backend="llamacpp", threads=1))


def _first_logits(engine, ids):
    import numpy as np

    if engine.backend == "hf":
        import torch

        with torch.inference_mode():
            return engine.model(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()
    engine.reset_cache()
    return np.array(engine._prefill(ids)[1][: len(engine.tokenizer)])


def test_f32_same_greedy_tokens(tiny, hf_engine):
    eng = _llama(tiny[1])
    gen = GenerationConfig(max_new_tokens=20, temperature=0)
    ids = hf_engine.render(MSGS).ids
    assert eng.render(MSGS).ids == ids
    assert eng.generate(ids, gen).text == hf_engine.generate(ids, gen).text


@pytest.mark.parametrize("outtype,tol", [("f16", 0.02), ("q8_0", 0.05), ("q4_k_m", 0.5)])
def test_cli_quantized_close(tiny, hf_engine, tmp_path, outtype, tol, capsys):
    """Through the CLI as a user runs it; logits of the converted model track the HF model's."""
    import numpy as np

    from ming.cli.main import main

    out = tmp_path / f"m-{outtype}.gguf"
    assert main(["models", "convert", str(tiny[0]), "--out", str(out), "--outtype", outtype]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    eng = _llama(out)
    ids = hf_engine.render(MSGS).ids
    x, y = _first_logits(eng, ids), _first_logits(hf_engine, ids)
    scale = np.abs(y).max()
    assert np.abs(x - y).max() / scale < tol
    # random tiny weights quantize badly at 4-5 bits (measured r = 0.91); a broken file gives r ~ 0
    assert np.corrcoef(x, y)[0, 1] > (0.99 if outtype != "q4_k_m" else 0.85)
    top = set(np.argsort(y)[-5:])
    assert x.argmax() in top
    gen = GenerationConfig(max_new_tokens=3, temperature=0)
    if outtype != "q4_k_m":
        assert eng.generate(ids, gen).text == hf_engine.generate(ids, gen).text


def test_gguf_metadata(tiny):
    import gguf

    r = gguf.GGUFReader(str(tiny[1]))
    arch = r.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen2"
    names = {t.name for t in r.tensors}
    assert "token_embd.weight" in names and "blk.1.ffn_down.weight" in names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd


def test_requantize_gguf_and_errors(tiny, tmp_path):
    from ming.models.convert import convert
    from ming.errors import MingError

    q = tmp_path / "q8.gguf"
    convert(str(tiny[1]), q, "q8_0")  # a GGUF source is re-quantized
    assert q.stat().st_size < tiny[1].stat().st_size
    with pytest.raises(MingError, match="already a GGUF"):
        convert(str(tiny[1]), tmp_path / "x.gguf", "f16")
    with pytest.raises(MingError, match=r"\.gguf"):
        convert(str(tiny[0]), tmp_path / "x.bin", "f16")
    with pytest.raises(MingError, match="does not exist"):
        convert(str(tmp_path / "nope"), tmp_path / "x.gguf", "f16")
    assert not list(tmp_path.glob("*.part-*"))


def test_unsupported_architecture(tiny_bloom_dir, tmp_path):
    from ming.models.convert import convert
    from ming.errors import MingError

    with pytest.raises(MingError, match="model_type 'bloom'"):
        convert(str(tiny_bloom_dir), tmp_path / "b.gguf", "f16")
    assert not (tmp_path / "b.gguf").exists()
