"""Settings: each option is declared once, as a dataclass field made with `option()` (type, default, help,
choices, flag spellings), and both the command-line flags and the `--config` YAML of chat, serve, train and
eval come from those declarations. One rule combines them: defaults < `--config` YAML < the flags the user
actually typed (flags are added with argparse.SUPPRESS defaults, so a flag that was not given never hides a
YAML value).

    add_settings(parser, ModelOptions, GenerationConfig, ChatOptions)   # flags + --config
    args = parser.parse_args(argv)        # ming's `Parser` fills every field: defaults < YAML < flags
    opts = load(ModelOptions, args)"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar

from ming.errors import MingError

T = TypeVar("T")

# option lists used by several commands, written once
TEMPLATES = ("qwen", "bloom", "hf")
BACKENDS = ("auto", "hf", "llamacpp", "vllm")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SAFETY = ("on", "off", "strict")
CHAT_MODES = ("qa", "consult")

SAFETY_HELP = ("runtime medical safety: emergency triage, report grounding, refusal policy (strict: emergencies get "
               "only the escalation)")
RETRIEVAL_HELP = ("add the few most relevant knowledge-base passages to the prompt and list them after the answer "
                  "(参考：知识库·…); off by default, measured in docs/grounding.md")
STAGES_OFF_HELP = ("turn stages of the answer pipeline off, comma-separated (safety, consult, retrieval, grounding, "
                   "medication), e.g. to measure what one adds")
TRIAGE_MODEL_HELP = ("where no red-flag rule fires, also ask the loaded model a constrained 是/否 (an emergency now?) "
                     "and escalate at --triage-threshold; one extra prefill per message (~0.6 s on the 1.5B here; "
                     "measured in docs/triage.md)")
CHAT_TRIAGE_MODEL_HELP = TRIAGE_MODEL_HELP + ("; default: on for the embedded 1.5B on llama.cpp only when the n-gram "
                                              "step is off (--no-triage-ngram), off for other models")
TRIAGE_NGRAM_HELP = ("where no red-flag rule fires, score the message with the character n-gram classifier "
                     "(ming.safety.ngram_triage: package data, pure Python, ~0.1 ms a message) and escalate at its "
                     "packaged threshold; leave-presentation-out recall 0.92 -> 0.98 OR the rules at FPR 0.045 "
                     "(docs/triage.md). Default: on ($MING_TRIAGE_NGRAM=none turns the default off)")
TRIAGE_PROBE_HELP = ("where no red-flag rule fires, also score the message with the triage probe (a linear probe on "
                     "the embedded 0.5B's hidden state, its own llama.cpp context: +0.8 GB resident, ~0.7 s a message "
                     "here) and escalate at its packaged threshold (docs/triage.md: it adds no recall to the n-gram "
                     "step). Default: off ($MING_TRIAGE_PROBE=on turns it on where llama.cpp and the 0.5B are installed)")
TRIAGE_THRESHOLD = 0.8  # the default of --triage-threshold (= ming.safety.model_triage.DEFAULT_THRESHOLD)
TRIAGE_THRESHOLD_HELP = "p(是) at or above which --triage-model escalates, in [0, 1]"
CHAT_MODE_HELP = ("qa = 医疗问答 (answer questions, analyse cases and reports); consult = 智能问诊 (ask one "
                  "follow-up question at a time, then give an assessment)")


def option(default: Any = None, help: str = "", *, flags: Sequence[str] = (), choices: Sequence[Any] | None = None,
           type: Any = None, cli: bool = True, default_factory: Any = None, **argparse_kw: Any) -> Any:
    """A settings field. `flags`: its spellings (default --field-name; the first is shown first); `cli=False`:
    YAML / code only; other keywords go to argparse.add_argument (e.g. nargs, const)."""
    meta = {"help": help, "flags": tuple(flags), "choices": tuple(choices) if choices else None, "type": type,
            "cli": cli, "argparse": argparse_kw}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class ModelOptions:
    """Which model to load and how (shared by chat, serve, eval)."""

    model_path: str | None = option(
        None, "omitted = the default model (the embedded 1.5B; `ming models` says why); '1.5b', '0.5b' = an embedded "
        "model (Qwen2.5-Coder-*-Instruct Q4_K_M, offline); 'base' = the embedded model under the default; "
        "'ming-lite' = the MING-lite adapter on the 0.5B (scripts/ming_lite.sh builds it); or a local HF folder, .gguf file or LoRA adapter folder",
        flags=("--model-path", "--model"))
    model_base: str | None = option(None, "base model when --model-path is a LoRA adapter (as MING does)")
    conv_template: str | None = option(None, "conversation template (default: detected from the model)",
                                       flags=("--conv-template", "--template"), choices=TEMPLATES)
    backend: str = option("auto", "generation backend (auto: llama.cpp for GGUF on CPU when installed, else "
                                  "transformers)", choices=BACKENDS)
    device: str = option("auto", "device", choices=DEVICES)
    dtype: str = option("auto", "weights dtype for transformers (auto: bf16/fp16 on GPU, fp32 on CPU)", choices=DTYPES)
    threads: int | None = option(None, "CPU threads (default: MING_THREADS, else the free cores, following them "
                                       "while generating)")
    context_length: int | None = option(None, "tokens of context (default: the model's, at most 8192)")
    prefix_cache: bool = option(True, "reuse the KV cache across turns (--no-prefix-cache re-encodes the whole "
                                      "history every turn)")
    allow_download: bool = option(False, "allow --model-path to be a Hugging Face Hub id that is downloaded "
                                         "(never by default)")
    tensor_parallel_size: int = option(1, "GPUs per model (vllm backend)")


@dataclass
class ChatOptions:
    """`ming chat`'s own settings (the model and generation settings are ModelOptions / GenerationConfig)."""

    mode: str = option("qa", CHAT_MODE_HELP, choices=CHAT_MODES)
    system: str | None = option(None, "system prompt; '' for none; '@template' for the one the checkpoint was "
                                      "trained with (e.g. MING-1.8B's 'You are a helpful assistant.')")
    safety: str = option("on", SAFETY_HELP, choices=SAFETY)
    retrieval: bool = option(False, RETRIEVAL_HELP)
    stages_off: str = option("", STAGES_OFF_HELP, metavar="NAME,...")
    triage_model: bool | None = option(None, CHAT_TRIAGE_MODEL_HELP)
    triage_ngram: bool | None = option(None, TRIAGE_NGRAM_HELP)
    triage_probe: bool | None = option(None, TRIAGE_PROBE_HELP)
    triage_threshold: float = option(TRIAGE_THRESHOLD, TRIAGE_THRESHOLD_HELP)


# -- flags ------------------------------------------------------------------------------------------------
def _base_type(f: dataclasses.Field) -> Any:
    """int / float / str / bool from the field's annotation (a string under `from __future__ import annotations`)."""
    if f.metadata.get("type"):
        return f.metadata["type"]
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if re.search(rf"\b{name}\b", ann) and not ann.startswith(("list", "tuple", "dict")):
            return kind
    return str


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]


def add_flags(parser: argparse.ArgumentParser | Any, cls: type, group: str | None = None,
              skip: Sequence[str] = ()) -> None:
    """One flag per `option()` field of `cls`. Defaults are SUPPRESS: only flags given appear in the namespace
    (`fill` adds the rest). Booleans get --x / --no-x."""
    target = parser.add_argument_group(group) if group else parser
    for f in cli_fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        flags = list(meta["flags"]) or ["--" + f.name.replace("_", "-")]
        default = _default(f)
        text = meta["help"]
        if default not in (None, "", ()) and not isinstance(default, bool):
            text += f" (default: {default})"
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text,
                              **meta["argparse"]}
        kind = _base_type(f)
        if kind is bool:
            if all(fl.startswith("--no-") for fl in flags):
                kw["action"] = "store_false" if default else "store_true"
            else:
                kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = kind
            if meta["choices"]:
                kw["choices"] = meta["choices"]
        target.add_argument(*flags, **kw)


def add_settings(parser: argparse.ArgumentParser, *classes: type, groups: Sequence[str | None] = (),
                 config_help: str | None = None) -> None:
    """Flags for each settings class, plus `--config FILE.yaml`; `ming.config.Parser` fills the namespace."""
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help=config_help or (
        "YAML file of settings (the flags' names with _ for -, e.g. `max_new_tokens: 256`); flags given on the "
        "command line override it"))
    for i, cls in enumerate(classes):
        add_flags(parser, cls, group=groups[i] if i < len(groups) else None)
    parser.set_defaults(_settings=tuple(classes))


# -- defaults < YAML < flags -----------------------------------------------------------------------------
def read_yaml(path: str | Path | None, classes: Sequence[type]) -> dict[str, Any]:
    """The settings in a --config file; a key no class declares is an error that names the known keys."""
    if not path:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MingError(f"config file {p} does not exist")
    loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise MingError(f"config file {p} must hold a mapping of settings, found {type(loaded).__name__}")
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(loaded) - known)
    if unknown:
        raise MingError(f"config file {p} has unknown settings {unknown}; known: {sorted(known)}")
    return loaded


def fill(ns: argparse.Namespace) -> argparse.Namespace:
    """Give every field of the namespace's settings classes its value: default < YAML < flag given."""
    classes = getattr(ns, "_settings", ())
    if not classes or getattr(ns, "_filled", False):
        return ns
    from_yaml = read_yaml(getattr(ns, "config", None), classes)
    for cls in classes:
        for f in dataclasses.fields(cls):
            if not hasattr(ns, f.name):
                setattr(ns, f.name, from_yaml[f.name] if f.name in from_yaml else _default(f))
    ns._filled = True
    return ns


class Parser(argparse.ArgumentParser):
    """argparse, plus `fill` after parsing (subcommand parsers are made with the same class)."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        return fill(ns), rest


def load(cls: type[T], ns: argparse.Namespace | None = None, yaml_path: str | Path | None = None, **fixed: Any) -> T:
    """An instance of `cls` from a parsed namespace (filled or not: then defaults < YAML < flags are combined
    here) or from a YAML file alone; `fixed` values win over both."""
    values: dict[str, Any] = {}
    names = [f.name for f in dataclasses.fields(cls)]
    if ns is not None and not getattr(ns, "_filled", False):
        values.update(read_yaml(getattr(ns, "config", None), [cls, *getattr(ns, "_settings", ())]))
    elif yaml_path is not None:
        values.update(read_yaml(yaml_path, [cls]))
    if ns is not None:
        values.update({k: v for k, v in vars(ns).items() if k in names})
    values.update(fixed)
    return cls(**{k: v for k, v in values.items() if k in names})


def merge(cls: type[T], yaml_path: str | Path | None = None, overrides: dict | None = None) -> T:
    """defaults < YAML < overrides (keys with value None in overrides are ignored)."""
    return load(cls, None, yaml_path, **{k: v for k, v in (overrides or {}).items() if v is not None})


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def save(path: str | Path, *objs: Any) -> Path:
    """Write the resolved settings of a run as one YAML file that `--config` reads back."""
    import yaml

    values: dict[str, Any] = {}
    for o in objs:
        values.update({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(o).items()})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return p
