"""The task registry: one module per benchmark, each exposing `TASK` (ming.eval.tasks.base.Task).
Modules are imported only when their task is asked for."""

from __future__ import annotations

import importlib

from ming.errors import MingError

REGISTRY: dict[str, str] = {
    # exam multiple-choice
    "cmexam": "ming.eval.tasks.cmexam",
    "medqa_mcmle": "ming.eval.tasks.medqa_mcmle",
    "cmb": "ming.eval.tasks.cmb",
    "cmmlu_medical": "ming.eval.tasks.cmmlu_medical",
    "medqa_usmle_en": "ming.eval.tasks.medqa_usmle_en",
    "mcq": "ming.eval.tasks.mcq",
    # open-ended QA
    "huatuo26m_qa": "ming.eval.tasks.huatuo26m_qa",
    "toyhom_qa": "ming.eval.tasks.toyhom_qa",
    # safety
    "safety_zh": "ming.eval.tasks.safety_zh",
    # simulated-patient consultation
    "covid_dialogue_zh": "ming.eval.tasks.covid_dialogue_zh",
    "meddialog_cn_100": "ming.eval.tasks.meddialog_cn_100",
    "cmtmedqa_dialogue": "ming.eval.tasks.cmtmedqa_dialogue",
    "cmb_clin": "ming.eval.tasks.cmb_clin",
}

# names that expand to several tasks
SUITES: dict[str, tuple[str, ...]] = {
    "mcq_dev": ("cmexam", "medqa_mcmle", "cmb", "cmmlu_medical", "medqa_usmle_en"),
    "qa_dev": ("huatuo26m_qa", "toyhom_qa"),
    "consult": ("meddialog_cn_100", "covid_dialogue_zh", "cmb_clin", "cmtmedqa_dialogue"),
}


def get(name: str):
    if name not in REGISTRY:
        raise MingError(f"unknown eval task {name!r}; known tasks: {', '.join(REGISTRY)} "
                        f"(suites: {', '.join(SUITES)}). `ming eval list` describes them.")
    return importlib.import_module(REGISTRY[name]).TASK


def expand(spec: str) -> list[str]:
    """"cmexam,cmb" or a suite name -> task names, in order, without repeats."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for name in SUITES.get(part, (part,)):
            get(name)
            if name not in out:
                out.append(name)
    if not out:
        raise MingError("no task given; `ming eval list` shows the tasks")
    return out
