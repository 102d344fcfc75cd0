"""CMB exam multiple-choice questions (shared/data/cmb, schema: exam MCQ)."""

from ming.eval.tasks.base import Task

TASK = Task(name="cmb", kind="mcq", version="1", dataset="cmb", file="dev.jsonl", shots_file="dev.jsonl",
            language="zh", description="CMB exam MCQs (zh), dev split")
