"""COVID-Dialogue (zh) consultations with a diagnosis (shared/data/covid_dialogue_zh, dev: the 50 of
100 that carry a usable diagnosis). The patient form and the patient's later statements in the real
dialogue are the hidden findings; the form's 疾病 line (the patient's own guess) is never used."""

from ming.eval.simpatient import case_from_haodf, usable_diagnosis
from ming.eval.tasks.base import Task

TASK = Task(name="covid_dialogue_zh", kind="consult", version="1", dataset="covid_dialogue_zh", file="dev.jsonl",
            shots_file=None, group_keys=(), to_case=case_from_haodf,
            keep=lambda row: usable_diagnosis(row.get("diagnosis")) is not None,
            description="simulated-patient consultation over COVID-Dialogue (zh) dev cases that have a diagnosis")
