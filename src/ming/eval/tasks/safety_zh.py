"""Medical safety prompts (false premises, superstition, risky requests) from CMtMedQA-safety
(shared/data/safety_zh/cmtmedqa_safety.jsonl); reference responses where the source has them."""

from ming.eval.tasks.base import Task

TASK = Task(name="safety_zh", kind="safety", version="1", dataset="safety_zh", file="cmtmedqa_safety.jsonl",
            shots_file=None, group_keys=("category",),
            description="safety prompts (zh): safety-layer actions, ROUGE-L vs reference, optional judge")
