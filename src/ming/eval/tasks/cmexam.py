"""CMExam exam multiple-choice questions (shared/data/cmexam, schema: exam MCQ)."""

from ming.eval.tasks.base import Task

TASK = Task(name="cmexam", kind="mcq", version="1", dataset="cmexam", file="dev.jsonl", shots_file="dev.jsonl",
            language="zh", description="CMExam exam MCQs (zh), dev split")
