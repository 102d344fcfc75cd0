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


@pytest.fixture(scope="module")
def tiny256(tmp_path_factory, qwen_tokenizer):
    """A tiny Qwen2 whose rows are 256 wide, so llama.cpp's k-quants apply (the 64-wide one falls back)."""
    from test_prefix_cache_llamacpp import tiny_qwen2

    return tiny_qwen2(tmp_path_factory, qwen_tokenizer, hidden=256, intermediate=256)


def _types(path) -> dict:
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def test_output_type_q4_k(tiny256, tmp_path, capsys):
    """`--outtype q4_k_s --output-type q4_k`: the output layer (here the tied token embedding) in Q4_K instead of
    the mixture's Q6_K, also when re-quantizing a GGUF; the file runs and tracks the f32 model's logits."""
    import numpy as np

    from ming.cli.main import main
    from ming.errors import MingError
    from ming.models.convert import convert

    f32 = tmp_path / "f32.gguf"
    convert(str(tiny256), f32, "f32")
    plain, q4k, again = tmp_path / "s.gguf", tmp_path / "s-q4k.gguf", tmp_path / "re.gguf"
    convert(str(tiny256), plain, "q4_k_s")
    assert main(["models", "convert", str(tiny256), "--out", str(q4k), "--outtype", "q4_k_s",
                 "--output-type", "q4_k"]) == 0
    assert "output layer q4_k" in capsys.readouterr().out
    convert(str(plain), again, "q4_k_s", output_type="q4_k")  # a GGUF source, re-quantized
    assert _types(plain)["token_embd.weight"] == "Q6_K"
    for p in (q4k, again):
        t = _types(p)
        assert t["token_embd.weight"] == "Q4_K" and t["blk.0.ffn_gate.weight"] == "Q4_K"
    ids = _llama(f32).render(MSGS).ids
    want = _first_logits(_llama(f32), ids)
    r_q4k = np.corrcoef(_first_logits(_llama(q4k), ids), want)[0, 1]
    r_q6k = np.corrcoef(_first_logits(_llama(plain), ids), want)[0, 1]
    # random weights quantize badly at 4 bits (measured r = 0.82 with the Q4_K output layer); a broken file gives ~0
    assert r_q4k > 0.75 and r_q4k > r_q6k - 0.1
    with pytest.raises(MingError, match="output-type"):
        convert(str(tiny256), tmp_path / "x.gguf", "f16", output_type="q4_k")
    with pytest.raises(MingError, match="unknown --output-type"):
        convert(str(tiny256), tmp_path / "x.gguf", "q4_k_s", output_type="q2_k")
