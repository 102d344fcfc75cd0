"""CMMLU exam multiple-choice questions (shared/data/cmmlu_medical, schema: exam MCQ)."""

from ming.eval.tasks.base import Task

TASK = Task(name="cmmlu_medical", kind="mcq", version="1", dataset="cmmlu_medical", file="dev.jsonl", shots_file="dev.jsonl",
            language="zh", description="CMMLU exam MCQs (zh), dev split")
