"""`ming eval`: medical benchmarks (exam MCQs, open QA, safety prompts) and simulated-patient
consultations, against a local engine or any OpenAI-compatible server.

    tasks/      one module per benchmark, registered by name (tasks/__init__.py)
    extract.py  answer letters from free text (never guessed: "unparsed" is counted)
    metrics.py  accuracy with 95% CI, ROUGE-L / BLEU on characters, paired significance
    clients.py  who answers: a local engine (through ming.respond) or an HTTP endpoint
    judge.py    optional LLM judge with a versioned rubric
    simpatient.py  patient simulator (LLM or rule-based) and the consultation loop
    runner.py   resumable per-item runs, reports (JSON + Markdown)
    compare.py  two runs side by side with significance
"""
