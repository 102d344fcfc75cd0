"""智能问诊: a consultation controller grounded in the knowledge base (`ming.kb`). `step(messages, kb)`
decides each consult-mode turn: ask one focused question, answer the patient's own question and
continue, escalate, or give the assessment. See docs/consult.md."""

from ming.consult.controller import ConsultAction, ConsultConfig, step
from ming.consult.rank import Candidate
from ming.consult.state import ConsultState, build_state

__all__ = ["Candidate", "ConsultAction", "ConsultConfig", "ConsultState", "build_state", "step"]
