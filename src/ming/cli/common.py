"""The settings of the subcommands that load a model (chat, serve, eval), read the same way everywhere: flags
and `--config` YAML both come from the declarations in ming.config / GenerationConfig. MING's own spellings
(--model-path, --conv-template, --max-new-token, --beam-size) work."""

from __future__ import annotations

import argparse

from ming.config import ModelOptions, load
from ming.engine.base import GenerationConfig

MODEL_GROUP = "model"
GENERATION_GROUP = "generation"


def generation_config(args: argparse.Namespace) -> GenerationConfig:
    gen = load(GenerationConfig, args)
    return gen.replace(stop=tuple(gen.stop or ())).validate()  # YAML gives a list


def model_options(args: argparse.Namespace) -> ModelOptions:
    return load(ModelOptions, args)
