"""MedQA-USMLE exam multiple-choice questions (shared/data/medqa_usmle_en, schema: exam MCQ)."""

from ming.eval.tasks.base import Task

TASK = Task(name="medqa_usmle_en", kind="mcq", version="1", dataset="medqa_usmle_en", file="dev.jsonl", shots_file="dev.jsonl",
            language="en", description="MedQA-USMLE exam MCQs (en), dev split")
