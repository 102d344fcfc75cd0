"""One module per raw source kind. Each exposes `OPTIONS` (defaults of its recipe options) and
`iter_records(paths, ctx)` that streams records in our schema (see ming.data.records).

| kind | input | output |
|---|---|---|
| exam_mcq | licensing-exam MCQ (question/options/answer/explanation) | QA stating and explaining the answer |
| doctor_qa | real doctor-patient QA (question/answer/department) | single-turn QA, greetings/signatures/ads removed |
| knowledge_graph | medical_kg (entities.jsonl + triples.jsonl) | templated QA over relations, or passage QA |
| dialogue | consultations (turns of patient/doctor, diagnosis/suggestion) | multi-turn ending in an assessment |
| case_reasoning | exam case MCQs, CMB-Clin-style cases | multi-turn: assistant asks, user reveals, assistant concludes |
| general_instruct | Alpaca/ShareGPT/our records | cleaned as is |
| medical_instruct | doctor QA rows, medical_kg | medical tasks: titles, triage, symptom extraction |
| safety | sensitive prompts (safety_zh) | refusals that point to proper care |
| counterfactual | medical_kg (+ false-premise prompts with reference answers) | answers correcting a false premise |
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ming.errors import MingError

KINDS = ("exam_mcq", "doctor_qa", "knowledge_graph", "dialogue", "case_reasoning", "general_instruct",
         "medical_instruct", "safety", "counterfactual")


def get_converter(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise MingError(f"unknown source kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return importlib.import_module(f"ming.data.sources.{kind}")
