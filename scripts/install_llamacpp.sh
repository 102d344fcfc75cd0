#!/usr/bin/env bash
# Install the llama.cpp backend (llama-cpp-python, pinned) into a virtual environment, built from its
# source distribution for this CPU with AMX code generation disabled (default) or, opt-in, with llama.cpp's
# AMX int8 kernels and a one-line fix to them.
#
#   bash scripts/install_llamacpp.sh [VENV]                       # default VENV: .venv
#   MING_LLAMACPP_AMX=1 bash scripts/install_llamacpp.sh [VENV]   # AMX kernels (CPUs with amx_int8)
#
# Why the flags: llama.cpp's default x86 build compiles an AMX int8 matmul path that crashes with
# "Illegal instruction" on the first decode on the Xeons this project runs on (AMX listed by the CPU,
# but not usable by the process). -mno-amx-* removes that code; ming also loads models without the
# AMX buffer type if a build with AMX is found (ming/engine/llamacpp.py).
#
# The AMX build (MING_LLAMACPP_AMX=1, only where /proc/cpuinfo lists amx_int8): the crash is GCC 12 dropping
# the stores that fill llama.cpp's AMX tile configuration (ggml_tile_config_init in ggml-cpu/amx/mmq.cpp: the
# ldtilecfg intrinsic is not seen to read them), so ldtilecfg loads stack garbage and faults (SIGSEGV) on
# the first batched matmul, whatever the weight type. The script unpacks the source, adds a compiler barrier
# before ldtilecfg, and builds with AMX. ming then uses the AMX kernels when MING_LLAMACPP_AMX=1 is set at
# run time as well (docs/serve.md "AMX").
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
AMX=0
if [ "${MING_LLAMACPP_AMX:-0}" = 1 ]; then
  if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
    AMX=1
    CMAKE_ARGS_MING="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
  else
    echo "install_llamacpp.sh: MING_LLAMACPP_AMX=1 but this CPU has no amx_int8; building without AMX" >&2
  fi
fi
WHAT=$([ "$AMX" = 1 ] && echo "with AMX (tile-config fix)" || echo "without AMX")
HOME_DIR=${MING_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ming}
KEY=$(printf '%s|%s|%s|%s|%s' "$VERSION" "$CMAKE_ARGS_MING" "$AMX" "$(uname -m)" "$("$PY" -c 'import sys; print(sys.implementation.cache_tag)')" \
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
  say "llama-cpp-python $VERSION (built $WHAT, key $KEY) is already installed"
else
  wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] || [ "${MING_LLAMACPP_REBUILD:-0}" = 1 ]; then
    for tool in cmake gcc g++; do
      if ! command -v $tool >/dev/null 2>&1 && ! "$PY" -m pip show cmake >/dev/null 2>&1; then
        echo "install_llamacpp.sh: $tool is missing; install a C/C++ toolchain (apt-get install build-essential cmake)" >&2
        exit 2
      fi
    done
    say "building llama-cpp-python $VERSION from source $WHAT (once, ~6 min on 2 cores) -> $WHEEL_DIR"
    rm -rf "$WHEEL_DIR" && mkdir -p "$WHEEL_DIR"
    SRC="llama-cpp-python==$VERSION"
    if [ "$AMX" = 1 ]; then  # unpack the sdist and fix the AMX tile configuration (see the top of this file)
      "$PY" -m pip download --no-cache-dir --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WHEEL_DIR/src"
      tar xzf "$WHEEL_DIR"/src/llama_cpp_python-*.tar.gz -C "$WHEEL_DIR/src"
      SRC=$(ls -d "$WHEEL_DIR"/src/llama_cpp_python-*/ | head -n1)
      "$PY" - "$SRC/vendor/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp" <<'EOF'
import sys
path = sys.argv[1]
src = open(path, encoding="utf-8").read()
old = "    _tile_loadconfig(&tc);\n"
fix = '    __asm__ __volatile__("" : : "r"(&tc) : "memory");  // ming: keep the tile-config stores (GCC 12)\n'
if fix not in src:
    if src.count(old) != 1:
        sys.exit(f"install_llamacpp.sh: {path} has no single `_tile_loadconfig(&tc);` to fix; this llama.cpp "
                 f"version is not the one the AMX fix was written for: unset MING_LLAMACPP_AMX")
    open(path, "w", encoding="utf-8").write(src.replace(old, fix + old))
EOF
    fi
    CMAKE_ARGS="$CMAKE_ARGS_MING" FORCE_CMAKE=1 "$PY" -m pip wheel --no-cache-dir --no-deps \
      --no-binary llama-cpp-python "$SRC" -w "$WHEEL_DIR"
    rm -rf "$WHEEL_DIR/src"
    wheel=$(ls "$WHEEL_DIR"/llama_cpp_python-*.whl | head -n1)
    printf 'version=%s\ncmake_args=%s\namx=%s\n' "$VERSION" "$CMAKE_ARGS_MING" "$AMX" > "$WHEEL_DIR/BUILD-FLAGS"
  else
    say "reusing the wheel built earlier: $wheel"
  fi
  "$PY" -m pip install --no-cache-dir --force-reinstall --no-deps "$wheel"
  "$PY" -m pip install --no-cache-dir -q "numpy>=1.24" "diskcache>=5.6" "jinja2>=2.11" "typing-extensions>=4.5"
  rm -f "$VENV"/.ming-llamacpp-* && touch "$marker"
fi

say "checking the build: load a model and decode in a child process"
"$PY" - <<'EOF'
import os, subprocess, sys
code = r'''
import os
import llama_cpp as L
info = L.llama_print_system_info().decode()
print("llama.cpp features:", info.strip())
if "AMX" in info and os.environ.get("MING_LLAMACPP_AMX") != "1":
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
    hint = "; rebuild without MING_LLAMACPP_AMX=1" if os.environ.get("MING_LLAMACPP_AMX") == "1" else ""
    sys.exit(f"decoding with llama.cpp crashed (exit {p.returncode}; -4 = Illegal instruction, -11 = SIGSEGV)"
             f"{hint}:\n{p.stderr[-2000:]}")
EOF
