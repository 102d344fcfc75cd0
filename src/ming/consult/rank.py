"""Candidate conditions from the collected findings: a naive-Bayes score over the KB's disease →
symptom links. A present symptom the disease lists is likely (P_HIT), one it does not list is as
likely as the symptom's share of all diseases allows (rare symptoms that a disease lacks count
against it more); an absent symptom the disease lists counts against it; the disease's commonness
(its page's 发病率) is a weak prior."""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field

from ming.consult.state import ConsultState
from ming.kb.store import KB

P_HIT = 0.6  # P(patient has symptom | disease lists it)
PRIOR_WEIGHT = 0.2
GROUP_FIT_BONUS = 2.0  # a child's illness for a child, …  # the KB's 发病率 figures are rough: a weak prior
PRUNE_MARGIN = 2
CHIEF_MISS = math.log(0.1)  # a disease that does not explain the chief complaint at all (a doctor rules it out first)
GROUPS = ("child", "elderly", "pregnancy", "female", "male")


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


def warm(kb: KB) -> KB:
    """Fill the KB's per-disease caches the ranking uses (once per process, ~0.1 s)."""
    return kb.warm(PRIOR_WEIGHT)


def p_miss(kb: KB, concept: str) -> float:
    """P(patient has symptom | disease does not list it): the symptom's base rate, bounded."""
    return min(0.3, max(0.005, 0.5 * len(kb.diseases_with(concept)) / kb.n))


def group_fit(state: ConsultState, groups) -> float:
    """Log-weight of a disease of a group (children, the elderly, pregnancy, one sex): a penalty when the
    patient is not in it (strong) or not known to be in it (mild), a small bonus when they are."""
    pen = 0.0
    fits = math.log(GROUP_FIT_BONUS)
    age, sex, preg = state.age, state.sex, state.pregnant()
    child = (age is not None and age < 14) or (age is None and state.child)  # "孩子…" without an age is a child
    known = age is not None or state.child
    for g in groups:
        if g == "child":
            pen += fits if child else math.log(0.01 if known else 0.3)
        elif g == "elderly":
            pen += fits if age is not None and age >= 60 else math.log(0.01 if known else 0.2)
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
    """The `top` most likely diseases given the present and absent findings. Scores accumulate over the
    KB's inverted index (disease lists per symptom), so a turn costs the postings of its findings."""
    pos = [c for c in state.present() if kb.diseases_with(c)]
    neg = [c for c in state.absent() if kb.diseases_with(c)]
    if not pos:
        return []
    chains = roots(pos, kb)
    # the chief complaint's forms among the findings (腹痛, and 右下腹痛 which is a 腹痛; not 压痛 beside it)
    chief = set(state.chief_symptoms)
    chief_forms = [c for c in pos if chief & kb.lexicon.expand(c)]
    explains_chief = set().union(*(kb.diseases_with(c) for c in chief_forms)) if chief_forms else None
    hit, neg_hit = math.log(P_HIT), math.log(1 - P_HIT)
    # every disease starts as if it explained nothing; what it lists then raises (or lowers) its score
    base = sum(math.log(p_miss(kb, ch[-1])) for ch in chains)
    base += sum(math.log(1 - p_miss(kb, c)) for c in neg)
    best: dict[str, dict[int, tuple[float, str]]] = {}
    for i, ch in enumerate(chains):
        miss = math.log(p_miss(kb, ch[-1]))
        for j, c in enumerate(ch):
            # a disease listing only a broader form (腹痛 for 右下腹压痛) explains the finding as far as that
            # form is specific: P_HIT scaled by sqrt(df(finding) / df(broader form))
            gain = (hit if j == 0 else math.log(P_HIT * math.sqrt(
                max(1, len(kb.diseases_with(ch[0]))) / max(1, len(kb.diseases_with(c)))))) - miss
            for name in kb.diseases_with(c):
                got = best.setdefault(name, {})
                if i not in got or got[i][0] < gain:
                    got[i] = (gain, c)
    against: dict[str, list[str]] = {}
    neg_gain = {c: neg_hit - math.log(1 - p_miss(kb, c)) for c in neg}
    for c in neg:
        for name in kb.diseases_with(c):
            if name in best:
                against.setdefault(name, []).append(c)
    fit = {g: group_fit(state, (g,)) for g in GROUPS}
    # a disease explaining two findings fewer than the best-explaining one cannot reach the lead (each
    # finding is worth more than the spread of priors): skip scoring it
    need = max(len(got) for got in best.values()) - PRUNE_MARGIN
    scores = []
    for name, got in best.items():
        if len(got) < need:
            continue
        s = base + kb.prior_term(name, PRIOR_WEIGHT) + sum(g for g, _ in got.values())
        for g in kb.diseases[name].get("groups", ()):
            s += fit.get(g, 0.0)
        for c in against.get(name, ()):
            s += neg_gain[c]
        if explains_chief is not None and name not in explains_chief:
            s += CHIEF_MISS
        scores.append((s, name))
    leaders = heapq.nsmallest(top, scores, key=lambda x: (-x[0], x[1]))
    m = leaders[0][0]
    z = sum(math.exp(sc - m) for sc, _ in leaders)
    out = []
    for sc, name in leaders:  # probabilities among the leading candidates
        sup = [c for _, (_, c) in sorted(best[name].items())]
        out.append(Candidate(name, sc, math.exp(sc - m) / z, sup, list(against.get(name, []))))
    return out
