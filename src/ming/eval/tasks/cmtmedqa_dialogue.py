"""CMtMedQA multi-turn consultations (shared/data/cmtmedqa_dialogue). No diagnosis in the data: scored
on coverage of the patient's statements and turns only (diagnosis accuracy is reported as n/a)."""

from ming.eval.simpatient import case_from_dialogue
from ming.eval.tasks.base import Task

TASK = Task(name="cmtmedqa_dialogue", kind="consult", version="1", dataset="cmtmedqa_dialogue", file="dev.jsonl",
            shots_file=None, group_keys=("department",), to_case=case_from_dialogue,
            description="simulated-patient consultation over CMtMedQA dialogues (coverage and turns; no diagnosis)")
