"""Read a few metadata keys of a GGUF file without parsing all of it.

`gguf.GGUFReader` builds every field up front: for a Qwen2 file that is 151k vocabulary strings and 151k
merges, ~10 s on this machine, to learn `general.architecture`, which is the file's first key. This reads the
header and walks the key/value section only until the keys asked for are found (format: llama.cpp's
docs/gguf.md; versions 2 and 3, little-endian)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from ming.errors import MingError

# value type -> struct format of a scalar (8: string, 9: array are handled apart)
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack("<" + fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "Q")
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data.decode("utf-8", "replace")


def _value(f: BinaryIO, vtype: int, keep: bool):
    """The value (or None when not kept: strings and arrays are then skipped without decoding)."""
    if vtype in _SCALAR:
        return _read(f, _SCALAR[vtype])
    if vtype == _STRING:
        if keep:
            return _string(f)
        f.seek(_read(f, "Q"), 1)
        return None
    if vtype == _ARRAY:
        itype, count = _read(f, "I"), _read(f, "Q")
        if itype in _SCALAR and not keep:
            f.seek(struct.calcsize("<" + _SCALAR[itype]) * count, 1)
            return None
        items = [_value(f, itype, keep) for _ in range(count)]
        return items if keep else None
    raise MingError(f"unknown GGUF value type {vtype}")


def read_metadata(path: str | Path, keys: set[str] | None = None) -> dict:
    """{key: value} for `keys` (all keys when None), stopping as soon as every key asked for is found."""
    path = Path(path)
    want = set(keys) if keys is not None else None
    out: dict = {}
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise MingError(f"{path} is not a GGUF file (no GGUF magic); pass a llama.cpp model file")
            version = _read(f, "I")
            if version not in (2, 3):
                raise MingError(f"{path}: GGUF version {version} is not supported (2 and 3 are; big-endian files "
                                f"are not)")
            _read(f, "Q")  # tensor count
            n_kv = _read(f, "Q")
            for _ in range(n_kv):
                key = _string(f)
                vtype = _read(f, "I")
                keep = want is None or key in want
                value = _value(f, vtype, keep)
                if keep:
                    out[key] = value
                    if want is not None and want.issubset(out):
                        break
    except EOFError:
        raise MingError(f"{path} ends inside its GGUF header: the file is truncated; download or convert it "
                        f"again") from None
    except OSError as exc:
        raise MingError(f"cannot read {path}: {exc}") from exc
    return out


def architecture(path: str | Path) -> str | None:
    """`general.architecture` (qwen2, llama, bloom …), or None when the file does not say."""
    return read_metadata(path, {"general.architecture"}).get("general.architecture")
