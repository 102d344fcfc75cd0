#!/usr/bin/env bash
# Install the llama.cpp backend (llama-cpp-python, pinned) into a virtual environment, built from its
# source distribution for this CPU with AMX code generation disabled.
#
#   bash scripts/install_llamacpp.sh [VENV]      # default VENV: .venv
#
# Why the flags: llama.cpp's default x86 build compiles an AMX int8 matmul path that crashes with
# "Illegal instruction" on the first decode on the Xeons this project runs on (AMX listed by the CPU,
# but not usable by the process). -mno-amx-* removes that code; ming also loads models without the
# AMX buffer type if a build with AMX is found (ming/engine/llamacpp.py).
#
# Reliability: the build (~6 min on 2 cores) happens once into a wheel under
# $MING_HOME/wheels/<version>-<flags hash>/ and is reinstalled from there afterwards. pip's own cache
# is never used (--no-cache-dir): it silently reuses a cached default build whatever CMAKE_ARGS say.
# After installing, a child process loads a tiny model and decodes; a crash fails the install.
# Environment: MING_LLAMACPP_VERSION (default 0.3.36), MING_HOME (default ~/.cache/ming),
# MING_LLAMACPP_REBUILD=1 (ignore the kept wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY="$VENV/bin/python"
VERSION=${MING_LLAMACPP_VERSION:-0.3.36}
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS_MING="-DCMAKE_C_FLAGS=\"$NO_AMX\" -DCMAKE_CXX_FLAGS=\"$NO_AMX\" -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
HOME_DIR=${MING_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ming}
KEY=$(printf '%s|%s|%s|%s' "$VERSION" "$CMAKE_ARGS_MING" "$(uname -m)" "$("$PY" -c 'import sys; print(sys.implementation.cache_tag)')" \
      | sha256sum | cut -c1-12)
WHEEL_DIR="$HOME_DIR/wheels/llama_cpp_python-$VERSION-$KEY"

say() { printf '\n== %s\n' "$*"; }

if [ ! -x "$PY" ]; then
  echo "install_llamacpp.sh: $PY not found; create the environment first (bash scripts/setup.sh)" >&2
  exit 2
fi

# the flags matter only on x86; elsewhere (Apple silicon, ARM) a plain source build is right
if [ "$(uname -m)" != "x86_64" ]; then
  CMAKE_ARGS_MING="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
fi

installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)
marker="$VENV/.ming-llamacpp-$KEY"
if [ "$installed" = "$VERSION" ] && [ -f "$marker" ] && [ "${MING_LLAMACPP_REBUILD:-0}" != 1 ]; then
  say "llama-cpp-python $VERSION (built without AMX, key $KEY) is already installed"
else
  wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] || [ "${MING_LLAMACPP_REBUILD:-0}" = 1 ]; then
    for tool in cmake gcc g++; do
      if ! command -v $tool >/dev/null 2>&1 && ! "$PY" -m pip show cmake >/dev/null 2>&1; then
        echo "install_llamacpp.sh: $tool is missing; install a C/C++ toolchain (apt-get install build-essential cmake)" >&2
        exit 2
      fi
    done
    say "building llama-cpp-python $VERSION from source without AMX (once, ~6 min on 2 cores) -> $WHEEL_DIR"
    rm -rf "$WHEEL_DIR" && mkdir -p "$WHEEL_DIR"
    CMAKE_ARGS="$CMAKE_ARGS_MING" FORCE_CMAKE=1 "$PY" -m pip wheel --no-cache-dir --no-deps \
      --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$WHEEL_DIR"
    wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-*.whl | head -n1)
    printf 'version=%s\ncmake_args=%s\n' "$VERSION" "$CMAKE_ARGS_MING" > "$WHEEL_DIR/BUILD-FLAGS"
  else
    say "reusing the wheel built earlier: $wheel"
  fi
  "$PY" -m pip install --no-cache-dir --force-reinstall --no-deps "$wheel"
  "$PY" -m pip install --no-cache-dir -q "numpy>=1.24" "diskcache>=5.6" "jinja2>=2.11" "typing-extensions>=4.5"
  rm -f "$VENV"/.ming-llamacpp-* && touch "$marker"
fi

say "checking the build: load a model and decode in a child process"
"$PY" - <<'EOF'
import subprocess, sys
code = r'''
import llama_cpp as L
info = L.llama_print_system_info().decode()
print("llama.cpp features:", info.strip())
if "AMX" in info:
    print("warning: this build has AMX kernels; ming loads models without them (use_extra_bufts=False)")
'''
p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
print(p.stdout.strip())
if p.returncode != 0:
    sys.exit(f"llama_cpp failed to import (exit {p.returncode}):\n{p.stderr[-2000:]}")
try:
    import ming  # noqa: F401
except ImportError:
    sys.exit(0)
code = r'''
from ming.config import ModelOptions
from ming.engine import create_engine, GenerationConfig
from ming.models import embedded
small = embedded.get("0.5b")
if not embedded.is_ready(small):
    print("embedded model not assembled yet: decode check skipped (ming models prepare 0.5b)"); raise SystemExit(0)
e = create_engine(ModelOptions(model_path="0.5b", backend="llamacpp"))
c = e.chat([{"role": "user", "content": "你好"}], GenerationConfig(max_new_tokens=4, temperature=0))
print("decode check ok:", repr(c.text))
'''
p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
print(p.stdout.strip())
if p.returncode != 0:
    sys.exit(f"decoding with llama.cpp crashed (exit {p.returncode}; -4 = Illegal instruction):\n{p.stderr[-2000:]}")
EOF
