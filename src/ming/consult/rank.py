"""Candidate conditions from the collected findings: a naive-Bayes score over the KB's disease →
symptom links. A present symptom the disease lists is likely (P_HIT), one it does not list is as
likely as the symptom's share of all diseases allows (rare symptoms that a disease lacks count
against it more); an absent symptom the disease lists counts against it; the disease's commonness
(its page's 发病率) is a weak prior."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ming.consult.state import ConsultState
from ming.kb.store import KB

P_HIT = 0.6  # P(patient has symptom | disease lists it)
PRIOR_WEIGHT = 0.2
GROUP_FIT_BONUS = 2.0  # a child's illness for a child, …  # the KB's 发病率 figures are rough: a weak prior
MAX_POOL = 4000


@dataclass
class Candidate:
    name: str
    score: float
    prob: float = 0.0  # normalised over the ranked pool
    supporting: list[str] = field(default_factory=list)  # present findings the KB lists for it
    against: list[str] = field(default_factory=list)  # absent findings the KB lists for it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(self.score, 3)
        d["prob"] = round(self.prob, 4)
        return d


def p_miss(kb: KB, concept: str) -> float:
    """P(patient has symptom | disease does not list it): the symptom's base rate, bounded."""
    return min(0.3, max(0.005, 0.5 * len(kb.diseases_with(concept)) / kb.n))


def group_fit(state: ConsultState, groups) -> float:
    """Log-weight of a disease of a group (children, the elderly, pregnancy, one sex): a penalty when the
    patient is not in it (strong) or not known to be in it (mild), a small bonus when they are."""
    pen = 0.0
    fits = math.log(GROUP_FIT_BONUS)
    age, sex, preg = state.age, state.sex, state.pregnant()
    for g in groups:
        if g == "child":
            pen += fits if age is not None and age < 14 else math.log(0.01 if age is not None else 0.3)
        elif g == "elderly":
            pen += fits if age is not None and age >= 60 else math.log(0.01 if age is not None else 0.2)
        elif g == "pregnancy":
            pen += fits if preg else math.log(0.001 if preg is False or sex == "男" else 0.1)
        elif g == "female":
            pen += 0.0 if sex == "女" else math.log(0.001 if sex == "男" else 0.5)
        elif g == "male":
            pen += 0.0 if sex == "男" else math.log(0.001 if sex == "女" else 0.5)
    return pen


def roots(concepts: list[str], kb: KB) -> list[tuple[str, ...]]:
    """Independent pieces of evidence: each present symptom that is not the broader form of another
    one, with its broader forms, most specific first (右下腹压痛 → (右下腹压痛, 压痛))."""
    have = set(concepts)
    broader_of_other = set()
    for c in have:
        broader_of_other |= kb.lexicon.expand(c) - {c}
    out = []
    for c in sorted(have - broader_of_other):
        chain = [c] + sorted((kb.lexicon.expand(c) - {c}) & have, key=lambda b: len(kb.diseases_with(b)))
        out.append(tuple(chain))
    return out


def rank(state: ConsultState, kb: KB, top: int = 10) -> list[Candidate]:
    pos = [c for c in state.present() if kb.diseases_with(c)]
    neg = [c for c in state.absent() if kb.diseases_with(c)]
    if not pos:
        return []
    pool: set[str] = set()
    for c in sorted(pos, key=lambda c: len(kb.diseases_with(c))):
        pool.update(kb.diseases_with(c))
        if len(pool) > MAX_POOL:
            break
    chains = roots(pos, kb)
    # a chain missing entirely costs the base rate of its broadest form (the mildest reading)
    miss = {ch: math.log(p_miss(kb, ch[-1])) for ch in chains}
    neg_miss = {c: math.log(1 - p_miss(kb, c)) for c in neg}
    hit, neg_hit = math.log(P_HIT), math.log(1 - P_HIT)
    # a disease that lists only a broader form (腹痛 for 右下腹压痛) explains the finding as far as
    # that form is specific: P_HIT scaled by sqrt(df(finding) / df(broader form))
    part = {(ch[0], b): math.log(P_HIT * math.sqrt(max(1, len(kb.diseases_with(ch[0]))) / max(1, len(kb.diseases_with(b)))))
            for ch in chains for b in ch[1:]}
    scored = []
    for name in pool:
        cs = kb.concepts(name)
        s = PRIOR_WEIGHT * math.log(kb.prior(name)) + group_fit(state, kb.diseases[name].get("groups", ()))
        sup = []
        for ch in chains:
            got = next((c for c in ch if c in cs), None)
            if got is None:
                s += miss[ch]
            else:
                s += hit if got == ch[0] else part[(ch[0], got)]
                sup.append(got)
        ag = []
        for c in neg:
            if c in cs:
                s += neg_hit
                ag.append(c)
            else:
                s += neg_miss[c]
        scored.append(Candidate(name, s, supporting=sup, against=ag))
    scored.sort(key=lambda c: (-c.score, c.name))
    scored = scored[:top]
    m = scored[0].score
    z = sum(math.exp(c.score - m) for c in scored)
    for c in scored:  # probabilities among the leading candidates
        c.prob = math.exp(c.score - m) / z
    return scored
