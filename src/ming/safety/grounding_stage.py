"""Issue 17's post-checks as stages of the turn pipeline (`ming.respond.Pipeline`, issue 14):

    # ming/stages.py, REGISTRY (after "safety" and "consult"; "retrieval" is ming.retrieve.RetrievalStage):
    "grounding": lambda opts: GroundingStage(**opts.settings.get("grounding", {})) if opts.safety != "off" else None,
    "medication": lambda opts: MedicationStage() if opts.safety != "off" else None,

- grounding: when the safety stage parsed a pasted report (`turn.safety.findings`), each finished sentence of
  the model's explanation is checked against the findings; a contradicting one is never shown: the model
  answers once more after the text already shown with the contradiction named in its prompt
  (`ming.respond.Regenerate`), and if that contradicts too, the explanation ming composes from the findings
  (with sources) follows, then the model's general advice if it names no test; precision first (`strict`, the
  default): a sentence about the results that the check cannot verify is dropped (no regeneration), and the
  composed explanation follows if nothing the model said about the results was shown;
- medication: after the answer, "需医生面诊后开具" for each prescription-only drug it suggests, and the
  antibiotic note when the user describes a cold.
`turn.meta["grounding"]` / `turn.meta["medication"]` (serve: `ming_grounding` / `ming_medication`) say what
was found. Duck-typed like `ming.consult.stage` (ming.respond imports no stage)."""

from __future__ import annotations

from ming.safety.grounding import ReportPostCheck
from ming.safety.medication import MedicationPostCheck


class _Recorded:
    """A post-check that writes its findings into the turn's metadata when the answer ends."""

    def __init__(self, inner, meta: dict, name: str):
        self.inner, self.meta, self.stage = inner, meta, name
        self.per_sentence = getattr(inner, "per_sentence", True)

    def sentence(self, text: str, shown: str):
        return self.inner.sentence(text, shown)

    @property
    def pending(self) -> str:
        return getattr(self.inner, "pending", "")

    def regenerating(self, hint: str) -> None:
        getattr(self.inner, "regenerating", lambda h: None)(hint)

    def finish(self, shown: str) -> str:
        extra = self.inner.finish(shown)
        self.meta[self.stage] = self.inner.to_dict()
        return extra


class GroundingStage:
    name = "grounding"

    def __init__(self, block_unreported: bool = False, fallback: bool = True, strict: bool = True):
        self.block_unreported, self.fallback, self.strict = block_unreported, fallback, strict

    def prepare(self, turn) -> None:
        pass

    def shrink(self, turn) -> bool:
        return False

    def post_check(self, turn):
        findings = getattr(turn.safety, "findings", None) or []
        if not findings or turn.canned is not None:
            return None
        check = ReportPostCheck(findings, block_unreported=self.block_unreported, fallback=self.fallback,
                                strict=self.strict)
        return _Recorded(check, turn.meta, self.name)


class MedicationStage:
    name = "medication"

    def prepare(self, turn) -> None:
        pass

    def shrink(self, turn) -> bool:
        return False

    def post_check(self, turn):
        if turn.canned is not None:
            return None
        users = [m["content"] for m in turn.conversation if m["role"] == "user"]
        return _Recorded(MedicationPostCheck(users), turn.meta, self.name)
