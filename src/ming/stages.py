"""The stages a turn runs (ming/respond.py), in order, and how a caller picks them.

    pipe = Pipeline(engine, build(StageOptions(safety="on")))
    build(StageOptions(safety="on", off={"consult"}))   # eval measuring a stage by turning it off

REGISTRY's order is the pipeline's order: safety check → consultation controller → grounding context
(then fit and render, generate, post-checks). A new stage is one entry here: a name and a function that
makes the stage from the caller's options (or returns None when it does not apply).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ming.consult.stage import from_options as consult_stage
from ming.errors import MingError
from ming.respond import Stage
from ming.safety import MODES as SAFETY_MODES
from ming.safety.policy import SafetyPolicy
from ming.retrieve import RetrievalStage
from ming.safety.grounding_stage import GroundingStage, MedicationStage
from ming.safety.stage import SafetyStage


@dataclass
class StageOptions:
    safety: str = "on"  # off | on | strict
    mode: str = "qa"  # qa | consult: stages that only act in one mode read it
    off: frozenset[str] = frozenset()  # stage names turned off for this caller
    settings: dict[str, Any] = field(default_factory=dict)  # stage name -> its own options


def stage_options(safety: str = "on", mode: str = "qa", *, retrieval: bool = False,
                  stages_off: str | Sequence[str] = "", triage_model: float | None = None,
                  triage_probe: bool = False, triage_ngram: bool = True, triage_english: bool = False,
                  concurrent: bool = False) -> StageOptions:
    """The options of `--safety`, `--retrieval`, `--stages-off a,b` (chat, serve, eval), `--triage-model`
    (chat, serve: `triage_model` = its threshold, None = off), `--triage-probe` and `--triage-ngram` (on unless
    False: the safety stage's default), `triage_english` (the model's 是/否 on the messages the n-gram step does
    not read: English; SafetyStage `english_model`). `concurrent`: turns are
    prepared while other threads generate (ming serve), so a stage that asks the model holds the engine
    (`engine.lock`) to do it."""
    names = stages_off.split(",") if isinstance(stages_off, str) else list(stages_off)
    settings: dict[str, Any] = {"retrieval": {"k": 2}} if retrieval else {}
    if triage_model is not None or triage_probe or not triage_ngram or triage_english:
        settings["safety"] = {"model_threshold": triage_model, "hold_engine": concurrent, "probe": triage_probe,
                              "ngram": triage_ngram, "english_model": triage_english}
    return StageOptions(safety=safety, mode=mode, off=frozenset(n.strip() for n in names if n.strip()),
                        settings=settings)


def load_safety(mode: str) -> SafetyPolicy | None:
    """The safety policy for `--safety MODE` (None for "off"), its rule files read now, so that a broken
    install fails before a model loads."""
    if mode not in SAFETY_MODES:
        raise MingError(f"unknown safety mode {mode!r}; use one of: {', '.join(SAFETY_MODES)}")
    if mode == "off":
        return None
    try:
        return SafetyPolicy(mode=mode).load()
    except (ImportError, OSError) as exc:
        raise MingError(f"--safety {mode} needs the safety layer's rule files, which could not be loaded ({exc}); "
                        "reinstall ming (`pip install -e .`), or run with --safety off to answer without it") from exc


def _safety(opts: StageOptions) -> Stage | None:
    policy = load_safety(opts.safety)
    return SafetyStage(policy, **opts.settings.get("safety", {})) if policy is not None else None


def _retrieval(opts: StageOptions) -> Stage | None:
    """KB passages with sources; off unless the caller's settings name it (measured: docs/grounding.md)."""
    s = opts.settings.get("retrieval")
    return RetrievalStage(**s) if s is not None and opts.mode == "qa" else None


def _grounding(opts: StageOptions) -> Stage | None:
    return GroundingStage(**opts.settings.get("grounding", {})) if opts.safety != "off" else None


def _medication(opts: StageOptions) -> Stage | None:
    return MedicationStage() if opts.safety != "off" else None


# name -> factory; the order is the order the turn runs them
REGISTRY: dict[str, Callable[[StageOptions], Stage | None]] = {
    "safety": _safety,
    "consult": consult_stage,   # issue 16: acts on consult-mode turns only; KB loaded lazily (ming/consult/stage.py)
    "retrieval": _retrieval,    # issue 17: passages + "参考：…"
    "grounding": _grounding,    # issue 17: a report's explanation held to its findings
    "medication": _medication,  # issue 17: "需医生面诊后开具", antibiotics for a cold
}


def build(opts: StageOptions | None = None) -> list[Stage]:
    opts = opts or StageOptions()
    unknown = set(opts.off) - set(REGISTRY)
    if unknown:
        raise MingError(f"unknown stage(s) {', '.join(sorted(unknown))}; the stages are {', '.join(REGISTRY)}")
    out = []
    for name, make in REGISTRY.items():
        if name in opts.off:
            continue
        stage = make(opts)
        if stage is not None:
            out.append(stage)
    return out
