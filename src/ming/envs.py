"""Every MING_* environment variable, its default and meaning, in one place.

Read through the functions below (at call time, never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VARS: dict[str, tuple[str, str]] = {
    "MING_HOME": ("$XDG_CACHE_HOME/ming (~/.cache/ming)",
                  "cache folder: the assembled embedded GGUF, converted checkpoints, built wheels"),
    "MING_DATA_DIR": ("../shared/data next to the checkout, if present",
                      "folder of the raw medical data used by recipes, eval tasks and benchmarks"),
    "MING_KB": ("medical_kg in the data folder",
                "knowledge-base folder (entities.jsonl + triples.jsonl, medical_kg schema) for 智能问诊"),
    "MING_THREADS": ("auto (see ming.engine.threads)", "CPU threads for generation and training"),
    "MING_LOG_LEVEL": ("WARNING", "log level of the ming logger (DEBUG, INFO, WARNING, ERROR)"),
    "MING_LLAMACPP_VERSION": ("0.3.36", "llama-cpp-python version scripts/install_llamacpp.sh builds"),
    "MING_LLAMACPP_AMX": ("0", "1: scripts/install_llamacpp.sh builds llama.cpp with its AMX int8 kernels (CPUs with "
                          "amx_int8; the tile-config fix applied) and ming loads models into the AMX buffer type"),
    "MING_LLAMACPP_REBUILD": ("0", "1 makes scripts/install_llamacpp.sh rebuild instead of reusing its kept wheel"),
    "MING_API_KEY": ("unset", "API key `ming serve` requires when --api-key is not given (keeps it out of `ps`)"),
    "MING_TRIAGE_MODEL": ("auto", "the model `ming triage` asks where no rule fires, when --model is not given: auto "
                          "(the embedded 1.5B if installed, with llama.cpp), none (rules only), or a model"),
    "MING_ALLOW_DOWNLOAD": ("0", "1 lets --model-path take a hub id and download it (same as --allow-download)"),
}


def ming_home() -> Path:
    if os.environ.get("MING_HOME"):
        return Path(os.environ["MING_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "ming"


def data_dir() -> Path | None:
    """The raw data folder: $MING_DATA_DIR, else ../shared/data beside the checkout or cwd."""
    if os.environ.get("MING_DATA_DIR"):
        return Path(os.environ["MING_DATA_DIR"]).expanduser()
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / ".." / "shared" / "data", Path.cwd() / "shared" / "data"]
    candidates += [p / "shared" / "data" for p in here.parents]
    for c in candidates:
        if (c / "README.md").is_file():
            return c.resolve()
    return None


def threads() -> int | None:
    v = os.environ.get("MING_THREADS", "").strip()
    return int(v) if v else None


def log_level() -> str:
    return os.environ.get("MING_LOG_LEVEL", "WARNING").upper()


def allow_download() -> bool:
    return os.environ.get("MING_ALLOW_DOWNLOAD", "0") in ("1", "true", "yes")


def triage_model() -> str:
    return os.environ.get("MING_TRIAGE_MODEL", "").strip() or "auto"


def _switch(name: str, default: str) -> str:
    v = os.environ.get(name, "").strip().lower() or default
    return {"off": "none", "0": "none", "false": "none", "1": "on", "true": "on"}.get(v, v)


def triage_probe() -> str:
    """MING_TRIAGE_PROBE: auto (the default: off; the n-gram step is the default model step), on, or none / off."""
    return _switch("MING_TRIAGE_PROBE", "auto")


def triage_ngram() -> str:
    """MING_TRIAGE_NGRAM: on (the default: the n-gram step where no rule fires), or none / off."""
    return _switch("MING_TRIAGE_NGRAM", "on")


def api_key() -> str | None:
    return os.environ.get("MING_API_KEY") or None


def llamacpp_amx() -> bool:
    return os.environ.get("MING_LLAMACPP_AMX", "0") in ("1", "true", "yes")
