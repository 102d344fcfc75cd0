"""Toyhom Chinese-medical-dialogue questions with doctor answers (shared/data/toyhom_qa)."""

from ming.eval.tasks.base import Task

TASK = Task(name="toyhom_qa", kind="qa", version="1", dataset="toyhom_qa", file="dev.jsonl", shots_file=None,
            description="open-ended medical QA (zh), ROUGE-L / BLEU-4 on characters vs the doctor's answer")
