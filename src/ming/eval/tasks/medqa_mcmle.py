"""MedQA-MCMLE exam multiple-choice questions (shared/data/medqa_mcmle, schema: exam MCQ)."""

from ming.eval.tasks.base import Task

TASK = Task(name="medqa_mcmle", kind="mcq", version="1", dataset="medqa_mcmle", file="dev.jsonl", shots_file="dev.jsonl",
            language="zh", description="MedQA-MCMLE exam MCQs (zh), dev split")
