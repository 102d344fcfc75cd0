"""CMB-Clin clinical cases (shared/data/cmb_clin/test_public.jsonl, 74 cases): 主诉 opens; history,
physical examination and test results are hidden findings; the diagnosis comes from the case's
"诊断：" answer (else its title)."""

from ming.eval.simpatient import case_from_cmb_clin
from ming.eval.tasks.base import Task

TASK = Task(name="cmb_clin", kind="consult", version="1", dataset="cmb_clin", file="test_public.jsonl",
            shots_file=None, group_keys=(), to_case=case_from_cmb_clin,
            description="simulated-patient consultation over CMB-Clin cases (diagnosis, coverage of exam findings)")
