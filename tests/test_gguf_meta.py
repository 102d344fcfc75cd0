"""Reading GGUF metadata without parsing the whole file: the same values as the gguf package's full reader,
clear errors for files that are not GGUF or are cut short."""

from __future__ import annotations

import pytest

from ming.models import gguf_meta
from ming.errors import MingError

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory):
    import numpy as np

    path = tmp_path_factory.mktemp("gguf-meta") / "small.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("测试模型 tiny")
    w.add_context_length(512)
    w.add_uint8("t.u8", 7)
    w.add_int16("t.i16", -3)
    w.add_float32("t.f32", 0.25)
    w.add_bool("t.bool", True)
    w.add_uint64("t.u64", 2**40)
    w.add_float64("t.f64", -1.5)
    w.add_array("t.ints", [1, 2, 3, 40000])
    w.add_array("t.strings", ["<|im_start|>", "医生", "", "a b"])
    w.add_tensor("w", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _full_reader(path) -> dict:
    r = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def test_every_key_matches_the_full_reader(small_gguf):
    ours = gguf_meta.read_metadata(small_gguf)
    theirs = _full_reader(small_gguf)
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        assert ours[k] == pytest.approx(v) if isinstance(v, float) else ours[k] == v, k
    assert ours["t.strings"] == ["<|im_start|>", "医生", "", "a b"] and ours["general.name"] == "测试模型 tiny"


def test_asked_keys_only(small_gguf):
    got = gguf_meta.read_metadata(small_gguf, {"t.strings", "t.u64"})
    assert got == {"t.strings": ["<|im_start|>", "医生", "", "a b"], "t.u64": 2**40}
    assert gguf_meta.read_metadata(small_gguf, {"no.such.key"}) == {}
    assert gguf_meta.architecture(small_gguf) == "qwen2"


def test_embedded_model_architecture_and_vocab_size():
    from ming.models import embedded

    path = embedded.gguf_path()
    if not path.exists():
        pytest.skip("embedded model not prepared (bash scripts/setup.sh)")
    assert gguf_meta.architecture(path) == "qwen2"
    # walking past the 151k-entry vocabulary and merges arrays to a later key reads them right
    meta = gguf_meta.read_metadata(path, {"qwen2.context_length", "tokenizer.ggml.eos_token_id", "qwen2.block_count"})
    assert meta["qwen2.block_count"] == 24 and meta["qwen2.context_length"] == 32768
    assert meta == {k: v for k, v in _full_reader(path).items() if k in meta}


def test_not_gguf_and_truncated_files_are_named(tmp_path, small_gguf):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(MingError, match="not a GGUF file"):
        gguf_meta.read_metadata(bad)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(small_gguf.read_bytes()[:100])
    with pytest.raises(MingError, match="truncated"):
        gguf_meta.read_metadata(cut)
