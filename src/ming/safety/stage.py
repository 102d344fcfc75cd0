"""The safety layer as the first stage of the turn (ming/respond.py): the decision of `SafetyPolicy`
turned into what the turn shows, renders and reports."""

from __future__ import annotations

from ming.errors import MingError
from ming.respond import Added, Stage, Turn
from ming.safety.model_triage import DEFAULT_PROMPT, DEFAULT_THRESHOLD, ModelTriage, measured_engine
from ming.safety.ngram_triage import NgramTriage, Unreadable
from ming.safety.probe_triage import FirstOf, ProbeTriage
from ming.safety.policy import SafetyPolicy
from ming.safety.report import grounding_text


class SafetyStage(Stage):
    """Emergency escalation first, refusals as the whole reply, a pasted report's findings table before
    the answer and its graded values in the system text, dose notes after.

    `model_threshold` (off when None): where no triage rule fires, the pipeline's own engine is asked the
    constrained 是/否 of ming.safety.model_triage (`bind` hands it the engine); p(是) at or above the threshold
    escalates. The metadata says which step fired (`triage_step`) and the model's p (`triage_model`).
    `hold_engine`: the judge takes `engine.lock` while it scores (ming serve prepares a turn while other
    requests generate; a batching llama.cpp engine scores on its own sequence 0 beside them).
    `english_model` (on in chat and serve): without `model_threshold`, and when the engine is one the 是/否 was
    measured on (model_triage.measured_engine: the embedded 1.5B on llama.cpp), its 是/否 at the default threshold
    is asked about the messages the n-gram step does not read, which are mostly Latin letters
    (English): ngram_triage.Unreadable.
    `ngram` (on by default): the character n-gram classifier (ming.safety.ngram_triage; package data, ~0.1 ms) is
    asked first where no rule fires; then, when they are on, the linear probe on the embedded 0.5B's hidden state
    (ming.safety.probe_triage; its own llama.cpp context, loaded at `bind`) and the yes/no, until one fires."""

    name = "safety"

    def __init__(self, policy: SafetyPolicy, model_threshold: float | None = None, prompt: str = DEFAULT_PROMPT,
                 hold_engine: bool = False, probe: bool = False, ngram: bool = True, english_model: bool = False):
        if model_threshold is not None and not 0.0 <= model_threshold <= 1.0:
            raise MingError(f"--triage-threshold is a probability in [0, 1], got {model_threshold}")
        self.policy = policy
        self.model_threshold = model_threshold
        self.prompt = prompt
        self.hold_engine = hold_engine
        self.probe = probe
        self.ngram = ngram
        self.english_model = english_model  # the model's yes/no on messages the n-gram step does not read (English)
        self.reads_english = False  # whether `bind` put that step in (the engine is one it was measured on)
        self.judge: NgramTriage | ModelTriage | ProbeTriage | FirstOf | None = None

    def bind(self, engine) -> None:
        judges: list = [NgramTriage()] if self.ngram else []
        if self.probe:
            judges.append(ProbeTriage())
        if self.model_threshold is not None:
            judges.append(ModelTriage(engine, self.prompt, self.model_threshold,
                                      lock=engine.lock if self.hold_engine else None))
        self.reads_english = (self.model_threshold is None and self.english_model and self.ngram
                              and measured_engine(engine))
        if self.reads_english:
            judges.append(Unreadable(ModelTriage(engine, self.prompt, DEFAULT_THRESHOLD,
                                                 lock=engine.lock if self.hold_engine else None)))
        self.judge = judges[0] if len(judges) == 1 else FirstOf(judges) if judges else None

    def prepare(self, turn: Turn) -> None:
        d = self.policy.check(turn.conversation, judge=self.judge)
        turn.safety = d
        turn.meta[self.name] = d.to_dict()
        if d.triggered:
            turn.notices[self.name] = f"{d.action}: {', '.join(d.rule_ids)}"
        if d.action == "refuse":
            turn.canned = Added(self.name, d.refusal)
            return
        if d.prefix:
            turn.lead.append(Added(self.name, d.prefix + "\n\n"))
        if d.findings_table:  # a pasted lab report: the graded findings the model's explanation must rest on
            turn.lead.append(Added(self.name, d.findings_table + "\n\n"))
        if d.system_addendum:
            turn.system_text[self.name] = d.system_addendum
        if not d.call_model:  # strict mode: an emergency gets the escalation only
            turn.canned = Added(self.name, "")
        if d.suffix:
            turn.tail.append(Added(self.name, "\n\n" + d.suffix))

    def shrink(self, turn: Turn) -> bool:
        """The short grounding: abnormal findings with their values, normal ones named (the table shown keeps all)."""
        d = turn.safety
        text = turn.system_text.get(self.name, "")
        if not d or not d.findings or not text:
            return False
        short = text.replace(grounding_text(d.findings), grounding_text(d.findings, short=True))
        turn.system_text[self.name] = short
        return short != text
