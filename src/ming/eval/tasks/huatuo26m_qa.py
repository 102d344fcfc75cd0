"""Huatuo-26M patient questions with real doctor answers as references (shared/data/huatuo26m_qa)."""

from ming.eval.tasks.base import Task

TASK = Task(name="huatuo26m_qa", kind="qa", version="1", dataset="huatuo26m_qa", file="dev.jsonl", shots_file=None,
            description="open-ended medical QA (zh), ROUGE-L / BLEU-4 on characters vs the doctor's answer")
