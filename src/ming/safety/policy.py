"""The safety policy applied identically in chat, the server and the evaluator.

    policy = SafetyPolicy(mode="on")            # "off" | "on" | "strict"
    d = policy.check(messages)                  # [{"role", "content"}, ...], last = new user message
    if not d.call_model: reply = d.prefix + d.refusal
    else: system += d.system_addendum; reply = d.prefix + model_answer + d.suffix

Layers (each reported in d.triggered with its rule id): triage (red flags -> escalation first),
report (lab values -> findings table + grounding for the model; a critical value -> a notice first, escalated),
policy (refusals; dose notes).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence
from importlib import resources

from ming import DISCLAIMER
from ming.config import SAFETY
from ming.errors import MingError
from ming.safety.report import Finding, critical_notice, findings_table, grounding_text, is_abnormal, parse_report
from ming.safety.triage import Triage, bounded_text, default_triage

MODES = SAFETY  # the one list of safety modes (ming.config)


@dataclass
class SafetyDecision:
    action: str = "answer"                 # answer | escalate | refuse
    prefix: str = ""
    refusal: str = ""
    system_addendum: str = ""
    suffix: str = ""
    findings: list[Finding] = field(default_factory=list)
    findings_table: str = ""
    triggered: list[dict] = field(default_factory=list)
    call_model: bool = True
    mode: str = "on"
    triage_step: str = ""  # which step found the emergency: "rules" | "model" | "" (none)
    model_triage: dict | None = None  # the model's yes/no when it was asked (rules silent; ModelTriage)

    @property
    def rule_ids(self) -> list[str]:
        return [t["rule_id"] for t in self.triggered]

    @property
    def notice(self) -> str:
        """One line saying which safety rules shaped this answer ('' when none)."""
        if not self.triggered:
            return ""
        return "〔本轮回答触发了安全规则：" + "、".join(self.rule_ids) + "〕"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "action": self.action, "call_model": self.call_model,
                "emergency": any(t["layer"] == "triage" or t["rule_id"] == CRITICAL_RULE_ID for t in self.triggered),
                "triage_step": self.triage_step,
                **({"triage_model": self.model_triage} if self.model_triage is not None else {}),
                "prefix": self.prefix, "refusal": self.refusal, "suffix": self.suffix,
                "system_addendum": self.system_addendum, "triggered": list(self.triggered),
                "findings": [f.to_dict() for f in self.findings], "findings_table": self.findings_table,
                "disclaimer": DISCLAIMER}


@dataclass(frozen=True)
class _Refusal:
    id: str
    rationale: str
    pattern: re.Pattern
    unless: re.Pattern | None
    reply: str


class _PolicyRules:
    def __init__(self, spec: dict):
        self.refusals = [
            _Refusal(r["id"], r["rationale"], re.compile("|".join(f"(?:{p})" for p in r["patterns"])),
                     re.compile("|".join(f"(?:{p})" for p in r["unless"])) if r.get("unless") else None,
                     r["reply"].strip())
            for r in spec["refusals"]]
        d = spec["dose"]
        self.dose_id, self.dose_rationale = d["id"], d["rationale"]
        self.dose_re = re.compile("|".join(f"(?:{p})" for p in d["patterns"]))
        self.dose_note, self.dose_system = d["note"], d["system"]
        self.emergency_system = spec["emergency_system"]


@lru_cache(maxsize=1)
def _rules() -> _PolicyRules:
    import yaml

    text = resources.files("ming.safety").joinpath("rules/policy.yaml").read_text(encoding="utf-8")
    return _PolicyRules(yaml.safe_load(text))


_DRUG_HINT = re.compile(r"(?:药|片|胶囊|颗粒|口服液|糖浆|混悬|滴剂|针|mg|毫克|布洛芬|对乙酰氨基酚|扑热息痛|美林|泰诺林|阿莫西林|头孢|"
                        r"阿司匹林|二甲双胍|胰岛素|氨氯地平|硝苯地平|他汀|激素|泼尼松|维生素|钙片|叶酸|铁剂|蒙脱石|益生菌|奥司他韦|"
                        r"地西泮|褪黑素|抗生素|退烧|止痛|降压|降糖)")
_REPORT_HINT = re.compile(r"(?:报告|体检|化验|检查结果|检验|指标|单子|血常规|尿常规|肝功|肾功|血脂)")


MODEL_RULE_ID = "MODEL-TRIAGE"  # the id an escalation found by the model's yes/no carries
CRITICAL_RULE_ID = "REPORT-CRITICAL"  # a pasted report with a critical value (危急值: K 6.8, 血红蛋白 52 …)
EDUCATION_TURNS = 4  # the model step is skipped when these newest user turns are all health-education questions
# (the judge reads the newest message and 3 earlier ones: ming.safety.model_triage.CONTEXT_TURNS)


def asks_model(triage: Triage, user_turns: Sequence[str]) -> bool:
    """Whether the model's yes/no is asked about a conversation whose rules are silent: not when its newest user
    turns are all health-education questions ("心梗有哪些症状"), nor when the newest one used its red-flag words only as
    an idiom, a joke or about someone already handled ("看到账单 休克了", round 10). Chat, serve, `ming triage` and
    bench/safety.py."""
    turns = list(user_turns)
    return bool(turns) and not triage.is_education(turns[-EDUCATION_TURNS:]) and not triage.is_figurative(turns)


class SafetyPolicy:
    """Decide, before the model runs, how this turn must be handled."""

    def __init__(self, mode: str = "on", triage: Triage | None = None):
        if mode not in MODES:
            raise MingError(f"unknown safety mode '{mode}'; use one of: {', '.join(MODES)}")
        self.mode = mode
        self._triage = triage

    def load(self) -> "SafetyPolicy":
        """Read and compile the rule files now (they are otherwise read on the first check)."""
        _rules()
        _ = self.triage
        return self

    @property
    def triage(self) -> Triage:
        if self._triage is None:
            self._triage = default_triage()
        return self._triage

    def model_escalation(self) -> str:
        """The escalation shown when the model, not a rule, found the emergency (no category to be specific)."""
        e = self.triage.escalations
        return "\n".join([e["header"], f"- {e['generic']}", e["footer"].format(rules=MODEL_RULE_ID)])

    def check(self, messages: list[dict], judge: Any = None) -> SafetyDecision:
        """`judge` (a ming.safety.model_triage.ModelTriage, optional): asked only when no triage rule fired and
        nothing is refused; at or above its threshold the turn escalates as for a rule (rule id MODEL-TRIAGE)."""
        d = SafetyDecision(mode=self.mode)
        if self.mode == "off":
            return d
        if not isinstance(messages, (list, tuple)) or any(not isinstance(m, dict) for m in messages):
            raise MingError("SafetyPolicy.check expects a list of {'role', 'content'} dicts")
        users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
        if not users:
            return d
        last = users[-1]
        norm = unicodedata.normalize("NFKC", bounded_text(last)).lower()  # a check reads at most MAX_CHECK_CHARS
        rules = _rules()
        addenda: list[str] = []

        # 1. triage over the conversation: findings add up over the user turns (and yes-answers to the
        # assistant's questions); an escalation an earlier assistant turn already showed is not repeated
        conv = self.triage.assess_conversation(messages, self.triage.escalated_in(messages))
        tri = conv.result
        for r in tri.rules:
            d.triggered.append({"layer": "triage", "rule_id": r.id, "rationale": r.rationale})

        # 2. refusals on the newest message
        refusal = None
        for rf in rules.refusals:
            if rf.pattern.search(norm) and not (rf.unless and rf.unless.search(norm)):
                refusal = rf
                d.triggered.append({"layer": "policy", "rule_id": rf.id, "rationale": rf.rationale})
                break

        # 2b. the loaded model's yes/no, only where the rules are silent and the user is not asking for knowledge
        by_model = False
        turns = self.triage.user_turns(messages) if judge is not None and not tri.emergency and refusal is None else []
        if asks_model(self.triage, turns):
            v = judge.assess(turns)
            d.model_triage = v.to_dict()
            if v.fired:
                by_model = True
                d.triggered.insert(0, {"layer": "triage", "rule_id": MODEL_RULE_ID,
                                       "rationale": f"规则未命中；模型判断此刻可能是急症（p={v.p_yes:.2f} ≥ {v.threshold:.2f}）"})

        # 3. lab / exam report values in the newest message
        findings = parse_report(last)
        # one value is a report when it says so, is a common self-measurement, or comes with its printed range /
        # flag ("谷丙转氨酶 45 U/L (0-40)": the model's explanation is held to it like any report's)
        if findings and (len(findings) >= 2 or _REPORT_HINT.search(last) or findings[0].key in ("BP", "SBP", "GLU", "HBA1C")
                         or findings[0].ref_source in ("报告所印参考范围", "报告标记") or findings[0].flag
                         or findings[0].critical):
            d.findings = findings
            d.findings_table = findings_table(findings)
            addenda.append(grounding_text(findings))
            n_ab = sum(is_abnormal(f) for f in findings)
            d.triggered.append({"layer": "report", "rule_id": "REPORT-FINDINGS",
                                "rationale": f"解析到 {len(findings)} 项检验/体检结果（{n_ab} 项异常），已按参考范围比对并提供给模型"})
            crit = [f for f in findings if f.critical]
            if crit:  # a critical value is escalated like an emergency: its notice is shown first, before the table
                d.triggered.insert(sum(t["layer"] == "triage" for t in d.triggered), {"layer": "report", "rule_id": CRITICAL_RULE_ID, "rationale": "检验危急值："
                                       + "、".join(f"{f.name} {f.value_text}（{f.critical}）" for f in crit)})

        # 4. dose questions
        dose = bool(rules.dose_re.search(norm) and _DRUG_HINT.search(norm)) and refusal is None
        if dose:
            d.triggered.append({"layer": "policy", "rule_id": rules.dose_id, "rationale": rules.dose_rationale})
            addenda.append(rules.dose_system)
            d.suffix = rules.dose_note

        if refusal is not None:
            d.action, d.call_model = "refuse", False
            # the refusal is the whole reply: an emergency escalation goes inside it, first
            lead = tri.escalation + "\n\n" if tri.emergency and refusal.id != "POL-SELFHARM-01" else ""
            d.refusal = lead + refusal.reply + "\n" + d.notice
            d.system_addendum = ""
            return d
        critical = critical_notice(d.findings)
        if tri.emergency:
            d.action = "escalate"
            d.prefix = tri.escalation if self.mode == "strict" else conv.escalation
            addenda.insert(0, rules.emergency_system.format(categories="、".join(tri.categories)))
            if self.mode == "strict":
                d.call_model = False
        elif by_model:
            d.action = "escalate"
            text = self.model_escalation()
            shown = any(text in str(m.get("content") or "") for m in messages if m.get("role") == "assistant")
            d.prefix = text if self.mode == "strict" or not shown else ""  # shown once per conversation
            addenda.insert(0, rules.emergency_system.format(categories="急症（模型判断）"))
            if self.mode == "strict":
                d.call_model = False
        if critical:  # after any escalation, before the findings table; every time (a new report, new values)
            d.action = "escalate"
            d.prefix = (d.prefix + "\n\n" if d.prefix else "") + critical
            if self.mode == "strict":
                d.call_model = False
        d.triage_step = "rules" if tri.emergency else "model" if by_model else ""
        d.system_addendum = "\n\n".join(addenda)
        if d.triggered and d.call_model and not (tri.emergency or by_model or critical):
            d.suffix = (d.suffix + "\n" if d.suffix else "") + d.notice
        return d
