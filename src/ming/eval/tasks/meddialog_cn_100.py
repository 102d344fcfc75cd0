"""MedDialog-CN 100 cases (HuatuoGPT's eval set): a haodf.com patient form and the doctor's
diagnosis (shared/data/meddialog_cn_100). Opens with the first sentence of 病情描述; the rest of the
description, duration, medication, allergy and history are hidden findings."""

from ming.eval.simpatient import case_from_haodf
from ming.eval.tasks.base import Task

TASK = Task(name="meddialog_cn_100", kind="consult", version="1", dataset="meddialog_cn_100", file="dev.jsonl",
            shots_file=None, group_keys=("department",), to_case=case_from_haodf,
            description="simulated-patient consultation over 100 MedDialog-CN cases with a doctor's diagnosis")
