"""Run-time medical safety: red-flag triage, grounded lab-report findings, refusal policy.

    from ming.safety import SafetyPolicy, SafetyDecision
    d = SafetyPolicy(mode="on").check(messages)

Modules: triage.py (rules/triage.yaml), report.py (tables/reference_ranges.yaml),
policy.py (rules/policy.yaml; SafetyPolicy). Rules compile lazily on first use.
"""

from ming.safety.policy import MODES, SafetyDecision, SafetyPolicy

__all__ = ["MODES", "SafetyDecision", "SafetyPolicy"]
