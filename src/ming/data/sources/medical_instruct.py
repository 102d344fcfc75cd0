"""Medical task instructions (MING's "医疗指令" row), built from real data with answers that can be checked:

`mode: qa_tasks` on doctor-QA rows: `title` (write a short title for a patient's question, from Toyhom's titles)
and `triage` (which department, from the row's department).
`mode: kg_tasks` on the knowledge graph: `symptom_mentions` (which of the listed symptoms does this clinical
description mention — answered by string match), `entity_typing` (disease / symptom / drug / check / food of
each term) and `symptom_triage` (symptoms -> department to see, hedged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ming.data.records import stable_id
from ming.data.sources._common import SourceContext, convert_rows, join_list, pick, prepare, selected, trim_to_sentence
from ming.data.sources._kg import load_kg_cached
from ming.errors import MingError

KG_PARTS = True  # a knowledge-graph folder can be converted in parts (SourceContext.part), one per task
OPTIONS = {"mode": "qa_tasks", "tasks": ["title", "triage", "symptom_mentions", "entity_typing", "symptom_triage"]}

_TITLE_Q = ["请为下面这段患者咨询拟一个简短的标题：\n{q}", "用一句话概括下面这个健康咨询的主题：\n{q}", "给这条问诊内容起个标题：\n{q}"]
_TRIAGE_Q = ["根据下面的咨询内容，判断应该挂哪个科室：\n{q}", "这位患者应该去哪个科室就诊？\n{q}", "请做分诊：下面的情况适合哪个科室？\n{q}"]
_MENTION_Q = ["下面这段描述中提到了以下哪些症状？\n描述：{t}\n候选症状：{c}", "请判断候选症状中哪些在这段文字里出现了。\n文字：{t}\n候选：{c}"]
_TYPE_NAMES = {"Disease": "疾病", "Symptom": "症状", "Drug": "药品", "Check": "检查", "Food": "食物"}
_TYPING_Q = ["判断下列医学术语分别属于哪一类（疾病、症状、药品、检查、食物）：{terms}", "请给这些词分类（疾病/症状/药品/检查/食物）：{terms}"]
_STRIAGE_Q = ["出现{s}，应该挂什么科？", "我最近{s}，去医院看哪个科比较合适？"]


def qa_tasks(row: dict, ctx: SourceContext) -> Iterator[dict]:
    q = str(row["question"]).strip()
    key = row.get("id") or q
    tasks = ctx.options["tasks"]
    title, dept = str(row.get("title") or "").strip(), str(row.get("department") or "").strip()
    if "title" in tasks and title and len(title) >= 4 and title != q:
        yield ctx.record([{"role": "user", "content": pick(_TITLE_Q, "title", key).format(q=q)},
                          {"role": "assistant", "content": title}], key=f"title|{key}", meta={"task": "title"})
    if "triage" in tasks and dept:
        yield ctx.record([{"role": "user", "content": pick(_TRIAGE_Q, "triage", key).format(q=q)},
                          {"role": "assistant", "content": f"建议挂{dept}。如症状严重或突然加重，请先到急诊就诊。"}],
                         key=f"triage|{key}", meta={"task": "triage", "department": dept})


def kg_tasks(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    tasks = ctx.options["tasks"]
    for folder in paths:
        kg = load_kg_cached(folder, ctx.kg_errors(), ctx.encoding)
        diseases = [d for d in kg.ordered() if d.rel]
        all_syms = sorted({s for d in diseases for s in d.rel.get("has_symptom", [])})
        for d in ctx.part_of(diseases):
            if not selected(d.name, ctx.options.get("select")):
                continue
            origin = f"{kg.folder.name}:{d.name}"
            text = d.attrs.get("symptom_detail")
            if "symptom_mentions" in tasks and isinstance(text, str) and all_syms:
                text = trim_to_sentence(text.strip(), min_chars=20)
                present = [s for s in d.rel.get("has_symptom", []) if len(s) >= 2 and s in text][:6]
                start = int(stable_id("mention", d.name, n=8), 16)
                absent = []
                for off in range(200):
                    s = all_syms[(start + off * 104729) % len(all_syms)]
                    if s not in text and s not in present and s not in absent and len(s) >= 2:
                        absent.append(s)
                    if len(absent) >= max(2, 6 - len(present)):
                        break
                if text and len(present) >= 1:
                    cands = sorted(present + absent, key=lambda s: stable_id("order", d.name, s))
                    q = pick(_MENTION_Q, "mention-q", d.name).format(t=text, c="、".join(cands))
                    a = f"文中提到的候选症状有：{'、'.join(s for s in cands if s in present)}。"
                    rec = ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                     key=f"mention|{d.name}", meta={"task": "symptom_mentions", "origin": origin})
                    yield rec
            syms, depts = d.rel.get("has_symptom", []), d.rel.get("belongs_to_department", [])
            if "symptom_triage" in tasks and len(syms) >= 2 and depts:
                s = "、".join(syms[:3])
                q = pick(_STRIAGE_Q, "striage", d.name).format(s=s)
                a = (f"{s}可见于多种疾病，例如{d.name}。建议先到{join_list(depts, limit=2)}就诊，由医生问诊、检查后明确原因；"
                     "如症状严重或突然加重，请及时到急诊就诊。")
                yield ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                 key=f"striage|{d.name}", meta={"task": "symptom_triage", "origin": origin})
        if "entity_typing" in tasks and ctx.part_of([0]):  # after the diseases: in the last part only
            terms = sorted((n, t) for n, ts in kg.types.items() for t in ts if t in _TYPE_NAMES and len(ts) == 1)
            terms.sort(key=lambda x: stable_id("typing", x[0]))
            for i in range(0, len(terms) - 4, 5):
                batch = terms[i:i + 5]
                key = "|".join(n for n, _ in batch)
                if not selected(key, ctx.options.get("select")):
                    continue
                q = pick(_TYPING_Q, "typing", key).format(terms="、".join(n for n, _ in batch))
                a = "\n".join(f"{n}：{_TYPE_NAMES[t]}" for n, t in batch)
                yield ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                 key=f"typing|{key}", meta={"task": "entity_typing", "origin": f"{kg.folder.name}"})


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    mode = ctx.options["mode"]
    if mode == "qa_tasks":
        yield from convert_rows(paths, ctx, qa_tasks, required=("question",), types={"question": str})
    elif mode == "kg_tasks":
        yield from kg_tasks(paths, ctx)
    else:
        raise MingError(f"medical_instruct mode {mode!r} is not one of qa_tasks, kg_tasks")
