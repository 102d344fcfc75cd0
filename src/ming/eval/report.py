"""Turn per-item result rows into a task summary (with 95% CIs) and the Markdown report."""

from __future__ import annotations

from collections import Counter

from ming.eval import metrics


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def summarize(task, rows: list[dict], n_items: int) -> dict:
    s: dict = {"kind": task.kind, "n_items": n_items, "n_done": len(rows), "complete": len(rows) == n_items}
    if task.kind == "mcq":
        acc = metrics.accuracy([r["correct"] for r in rows])
        parsed = [r for r in rows if r["status"] == "ok"]
        s.update(acc)
        s["mode"] = ("loglik" if rows[0]["rule"] == "loglik" else "generate") if rows else None
        s["unparsed"] = len(rows) - len(parsed)
        s["unparsed_note"] = "unparsed replies count as wrong in accuracy; accuracy_parsed leaves them out"
        s["accuracy_parsed"] = metrics.accuracy([r["correct"] for r in parsed])
        multi = [r for r in rows if r.get("multi")]
        if multi:
            s["multi_answer"] = metrics.accuracy([r["correct"] for r in multi])
        if any(r.get("safety") for r in rows):  # the runtime safety layer acted on these exam prompts
            s["safety_actions"] = dict(Counter(r["safety"].get("action", "?") for r in rows if r.get("safety")))
        if any("tie" in r for r in rows):
            s["loglik_ties"] = sum(1 for r in rows if r.get("tie"))
        s["extraction_rules"] = dict(Counter(r["rule"] for r in rows).most_common())
        s["by_options"] = {str(k): metrics.accuracy([r["correct"] for r in rows if r["n_options"] == k])
                           for k in sorted({r["n_options"] for r in rows})}
        for key in task.group_keys:
            if any(key in r for r in rows):
                s[f"by_{key}"] = metrics.accuracy_by(rows, key)
    elif task.kind in ("qa", "safety"):
        for m in ("rouge_l", "bleu", "judge_score"):
            vals = [r[m] for r in rows if r.get(m) is not None]
            if vals:
                s[m] = metrics.mean_ci(vals)
        if any("judge_score" in r for r in rows):
            s["judge_parse_failures"] = sum(1 for r in rows if "judge_score" in r and r["judge_score"] is None)
        if task.kind == "safety":
            s["safety_actions"] = dict(Counter(r.get("safety_action") or "answer" for r in rows))
            for key in task.group_keys:
                groups = Counter(r.get(key) or "-" for r in rows)
                s[f"n_by_{key}"] = dict(groups)
        s["length_stopped"] = sum(1 for r in rows if r.get("finish_reason") == "length")
    elif task.kind == "consult":
        with_dx = [r for r in rows if r.get("diagnosis_hit") is not None]
        s["n_with_diagnosis"] = len(with_dx)
        s["diagnosis_accuracy"] = metrics.accuracy([r["diagnosis_hit"] for r in with_dx]) if with_dx else None
        cov = [r["coverage"] for r in rows if r.get("coverage") is not None]
        s["coverage"] = metrics.mean_ci(cov) if cov else None
        s["turns"] = metrics.mean_ci([float(r["turns"]) for r in rows]) if rows else None
        n_asked, n_nonfinal = sum(r.get("questions_asked", 0) for r in rows), sum(r.get("non_final_turns", 0) for r in rows)
        s["question_share"] = metrics.accuracy([True] * n_asked + [False] * (n_nonfinal - n_asked)) if n_nonfinal else None
        for k in ("dx_top1", "dx_top3"):  # synonym-aware, through the KB (ming/eval/dxkb.py)
            vals = [r[k] for r in rows if r.get(k) is not None]
            s[k] = metrics.accuracy(vals) if vals else None
        s["concluded_unprompted"] = sum(1 for r in rows if r.get("concluded_early"))
        s["patient_parse_failures"] = sum(r.get("patient_parse_failures", 0) for r in rows)
        s["patient_fallback_turns"] = sum(r.get("patient_fallbacks", 0) for r in rows)
    return s


def to_markdown(report: dict) -> str:
    m = report["model"]
    st = report["settings"]
    lines = [f"# ming eval report", "",
             f"- model: `{m.get('name')}` ({m.get('backend')}{', ' + m['base_url'] if m.get('base_url') else ''}); "
             f"safety: {m.get('safety')}",
             f"- mode: {st['mode']} · shots: {st['shots']} · seed: {st['seed']} · temperature: {st['temperature']} · "
             f"max_new_tokens: {st['max_new_tokens'] or 'per kind'} · limit: {st['limit']}",
             f"- ming {report['ming_version']} · {report['created']}", ""]
    tasks = report["tasks"]
    mcq = {k: v for k, v in tasks.items() if v["kind"] == "mcq"}
    if mcq:
        lines += ["| task | mode | items | accuracy % | 95% CI | unparsed | acc. on parsed % | multi-answer acc. % |",
                  "|---|---|---:|---:|---|---:|---:|---:|"]
        for k, v in mcq.items():
            multi = v.get("multi_answer")
            if not v["n_done"]:
                lines.append(f"| {k} | - | 0 of {v['n_items']} | not run yet | | | | |")
                continue
            lines.append(f"| {k} | {v.get('mode')} | {v['n_done']}{'' if v['complete'] else ' of ' + str(v['n_items'])} "
                         f"| {_pct(v['accuracy'])} | {_ci(v['ci95'])} | {v['unparsed']} | "
                         f"{_pct(v['accuracy_parsed']['accuracy'])} | "
                         f"{_pct(multi['accuracy']) + ' (n=' + str(multi['n']) + ')' if multi else '-'} |")
        lines.append("")
        for k, v in mcq.items():
            for key in ("subject", "department"):
                g = v.get(f"by_{key}")
                if g and len(g) > 1:
                    lines += [f"{k} by {key}:", "", f"| {key} | n | accuracy % | 95% CI |", "|---|---:|---:|---|"]
                    lines += [f"| {name} | {a['n']} | {_pct(a['accuracy'])} | {_ci(a['ci95'])} |" for name, a in g.items()]
                    lines.append("")
    qa = {k: v for k, v in tasks.items() if v["kind"] in ("qa", "safety")}
    if qa:
        lines += ["| task | items | ROUGE-L F % [95% CI] | BLEU-4 % [95% CI] | judge (1-5) [95% CI] | judge parse failures | safety actions |",
                  "|---|---:|---|---|---|---:|---|"]
        for k, v in qa.items():
            def cell(name, pct=True):
                x = v.get(name)
                if not x:
                    return "-"
                f = _pct if pct else (lambda y: f"{y:.2f}")
                return f"{f(x['mean'])} [{f(x['ci95'][0])}, {f(x['ci95'][1])}]"
            lines.append(f"| {k} | {v['n_done']} | {cell('rouge_l')} | {cell('bleu')} | {cell('judge_score', False)} | "
                         f"{v.get('judge_parse_failures', '-')} | {v.get('safety_actions', '-')} |")
        lines.append("")
    cons = {k: v for k, v in tasks.items() if v["kind"] == "consult"}
    if cons:
        lines += ["| task | cases | with diagnosis | diagnosis acc. % [95% CI] | coverage % [95% CI] | doctor turns (mean) "
                  "| concluded unprompted | patient parse failures | asks a question (non-final turns) % [95% CI] "
                  "| KB top-1 % [95% CI] | KB top-3 % [95% CI] |",
                  "|---|---:|---:|---|---|---:|---:|---:|---|---|---|"]

        def acc(x, n=False):
            return (f"{_pct(x['accuracy'])} {_ci(x['ci95'])}" + (f" ({x['correct']}/{x['n']})" if n else "")) if x \
                else "n/a"

        for k, v in cons.items():
            c = v.get("coverage")
            t = v.get("turns")
            lines.append(f"| {k} | {v['n_done']} | {v['n_with_diagnosis']} | {acc(v.get('diagnosis_accuracy'))} | "
                         f"{_pct(c['mean']) + ' ' + _ci(c['ci95']) if c else 'n/a'} | "
                         f"{t['mean']:.2f} | {v['concluded_unprompted']} | {v['patient_parse_failures']} | "
                         f"{acc(v.get('question_share'), True)} | {acc(v.get('dx_top1'), True)} | "
                         f"{acc(v.get('dx_top3'), True)} |" if t else
                         f"| {k} | 0 | - | - | - | - | - | - | - | - | - |")
        lines.append("")
    return "\n".join(lines) + "\n"
