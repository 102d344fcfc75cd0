"""Any exam file in the shared MCQ schema: `ming eval mcq --data FILE`."""

from ming.eval.tasks.base import Task

TASK = Task(name="mcq", kind="mcq", version="1", dataset=None, file="", shots_file=None,
            description="generic multiple-choice task over --data FILE (shared exam MCQ schema)")
