"""`ming eval compare A B`: two runs side by side on the items both ran, with each side's 95% confidence
interval and paired significance (exact McNemar for right/wrong outcomes, paired bootstrap for graded scores).
A side may be several run folders joined by commas (e.g. a generate run, a loglik run and a consultation
run of one model); MCQ rows scored by log-likelihood are reported as "TASK (loglik)"."""

from __future__ import annotations

import json
from pathlib import Path

from ming.errors import MingError
from ming.eval import metrics


def _task_label(r: dict) -> str:
    return f"{r['task']} (loglik)" if r.get("rule") == "loglik" else r["task"]


def load_runs(paths: str | Path) -> dict[tuple[str, str], dict]:
    """Rows of one or more run folders ("a,b,c"), keyed by (task label, item id). Where one side holds a task in
    both MCQ modes, its loglik rows are labelled "TASK (loglik)"; a lone loglik run keeps plain task names, so a
    generate run and a loglik run of one model can be compared with each other."""
    runs = [load_run(p.strip())[1] for p in str(paths).split(",") if p.strip()]
    modes: dict[str, set] = {}
    for rows in runs:
        for r in rows.values():
            modes.setdefault(r["task"], set()).add(r.get("rule") == "loglik")
    out: dict[tuple[str, str], dict] = {}
    for rows in runs:
        for r in rows.values():
            label = _task_label(r) if len(modes[r["task"]]) > 1 else r["task"]
            out[(label, str(r["id"]))] = r
    return out


def load_run(path: str | Path) -> tuple[dict, dict[tuple[str, str], dict]]:
    p = Path(path)
    d = p.parent if p.is_file() else p
    rep, res = d / "report.json", d / "results.jsonl"
    if not res.is_file():
        raise MingError(f"{p} is not an eval run folder: no results.jsonl in {d}. Give the --output folder of "
                        "a `ming eval` run.")
    report = json.loads(rep.read_text(encoding="utf-8")) if rep.is_file() else {}
    rows = {}
    with open(res, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line of a run still in progress
                rows[(r["task"], str(r["id"]))] = r
    return report, rows


# (metric name, row -> value, kind) per task kind; kind "binary" uses McNemar, "score" paired bootstrap
METRICS = {
    "mcq": [("accuracy", lambda r: bool(r["correct"]), "binary")],
    "qa": [("rouge_l", lambda r: r.get("rouge_l"), "score"), ("bleu", lambda r: r.get("bleu"), "score"),
           ("judge_score", lambda r: r.get("judge_score"), "score")],
    "consult": [("question_share", lambda r: (r["questions_asked"] / r["non_final_turns"]
                                              if r.get("non_final_turns") else None), "score"),
                ("coverage", lambda r: r.get("coverage"), "score"),
                ("diagnosis_accuracy", lambda r: r.get("diagnosis_hit"), "binary"),
                ("dx_top1", lambda r: r.get("dx_top1"), "binary"), ("dx_top3", lambda r: r.get("dx_top3"), "binary"),
                ("turns", lambda r: r.get("turns"), "score")],
}
METRICS["safety"] = METRICS["qa"]


def compare(a: str | Path, b: str | Path) -> list[dict]:
    ra, rb = load_runs(a), load_runs(b)
    tasks = sorted({t for t, _ in ra} & {t for t, _ in rb})
    if not tasks:
        raise MingError(f"{a} and {b} have no task in common; compare runs of the same tasks")
    out = []
    for t in tasks:
        ids = sorted({i for tt, i in ra if tt == t} & {i for tt, i in rb if tt == t})
        kind = ra[(t, ids[0])]["kind"] if ids else "mcq"
        for name, get, mtype in METRICS.get(kind, []):
            pairs = [(get(ra[(t, i)]), get(rb[(t, i)])) for i in ids]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if not pairs:
                continue
            xa, xb = [x for x, _ in pairs], [y for _, y in pairs]
            row = {"task": t, "metric": name, "n": len(pairs), "a": sum(map(float, xa)) / len(pairs),
                   "b": sum(map(float, xb)) / len(pairs)}
            row["delta"] = row["b"] - row["a"]
            if mtype == "binary":
                row["a_ci95"] = list(metrics.wilson_ci(sum(map(bool, xa)), len(xa)))
                row["b_ci95"] = list(metrics.wilson_ci(sum(map(bool, xb)), len(xb)))
                mc = metrics.mcnemar(xa, xb)
                row.update(test="McNemar (exact)", p=mc["p"], only_a=mc["only_a"], only_b=mc["only_b"])
            else:
                row["a_ci95"] = list(metrics.bootstrap_ci([float(x) for x in xa]))
                row["b_ci95"] = list(metrics.bootstrap_ci([float(y) for y in xb]))
                pb = metrics.paired_bootstrap([float(x) for x in xa], [float(y) for y in xb])
                row.update(test="paired bootstrap", p=pb["p"], delta_ci95=pb["ci95"])
            out.append(row)
    return out


def to_markdown(rows: list[dict], a: str, b: str) -> str:
    lines = [f"A = {a}", f"B = {b}", "",
             "| task | metric | paired n | A [95% CI] | B [95% CI] | B − A | p | test |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        pct = r["metric"] in ("accuracy", "diagnosis_accuracy", "coverage", "rouge_l", "bleu", "question_share",
                              "dx_top1", "dx_top3")
        f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.2f}")
        sig = " *" if r["p"] < 0.05 else ""
        ca, cb = r.get("a_ci95"), r.get("b_ci95")
        sa = f(r["a"]) + (f" [{f(ca[0])}, {f(ca[1])}]" if ca else "")
        sb = f(r["b"]) + (f" [{f(cb[0])}, {f(cb[1])}]" if cb else "")
        lines.append(f"| {r['task']} | {r['metric']} | {r['n']} | {sa} | {sb} | "
                     f"{'+' if r['delta'] >= 0 else '−'}{f(abs(r['delta']))} | {r['p']:.3g}{sig} | {r['test']} |")
    lines += ["", "* p < 0.05 (two-sided). Only items present in both runs are compared."]
    return "\n".join(lines) + "\n"
