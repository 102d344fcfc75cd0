"""Medical counterfactuals: questions built on a false premise -> answers that correct the premise.

`mode: kg` — false relations drawn from the knowledge graph, each corrected with the true ones:
  * a food the disease should avoid, presented as good for it;
  * a drug of an unrelated disease (different department), presented as the cure ("既然X能治好Y……");
  * a symptom of an unrelated disease, presented as proof of the disease.
`mode: prompts` — rows of safety_zh whose category is a false premise / myth / fictitious disease or drug and that
carry a written reference response.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ming.data.records import stable_id
from ming.data.sources._common import Skip, SourceContext, convert_rows, join_list, pick, prepare, selected
from ming.data.sources._kg import Disease, KnowledgeGraph, load_kg_cached
from ming.errors import MingError

KG_PARTS = True  # a knowledge-graph folder can be converted in parts (SourceContext.part), one per task
OPTIONS = {"mode": "kg", "kinds": ["food", "drug", "symptom"], "false_premise_categories": ["false_premise", "myth",
                                                                                          "fictitious"]}

Q = {
    "food": ["听说{d}患者多吃{x}有好处，是这样吗？", "得了{d}应该多吃点{x}补一补吧？", "{x}对{d}有治疗作用，我每天都吃可以吗？"],
    "drug": ["既然{x}能治好{d}，我是不是直接吃{x}就行了？", "{x}是治{d}的特效药吧？我想自己买来吃。",
             "朋友说{d}吃{x}就能好，不用去医院，对吗？"],
    "symptom": ["{x}是{d}的典型症状，我出现了{x}，肯定是得了{d}吧？", "我有{x}，这说明我得了{d}对不对？",
                "{d}最典型的表现就是{x}吧？"],
}


def _false_relation(diseases, d, kind: str, rel: str):
    """(other disease, a `rel` value of it that `d` does not have) — a false relation for `d`, or (None, None)."""
    o = _other(diseases, d, kind, rel)
    if not o:
        return None, None
    return o, next((y for y in o.rel[rel] if y not in d.rel[rel]), None)


def _other(kg_list: list[Disease], d: Disease, key: str, need: str) -> Disease | None:
    """A disease of a different department that has relation `need` (deterministic)."""
    depts = set(d.rel.get("belongs_to_department", []))
    start = int(stable_id("cf", d.name, key, n=8), 16) % len(kg_list)
    for off in range(40):
        o = kg_list[(start + off * 7919) % len(kg_list)]
        if o.name != d.name and o.rel.get(need) and depts and not depts & set(o.rel.get("belongs_to_department", [])):
            return o
    return None


def kg_records(kg: KnowledgeGraph, ctx: SourceContext) -> Iterator[dict]:
    diseases = [d for d in kg.ordered() if d.rel]
    kinds = ctx.options["kinds"]
    for d in ctx.part_of(diseases):
        if not selected(d.name, ctx.options.get("select")):
            continue
        dept = join_list(d.rel.get("belongs_to_department", []), limit=2)
        see = f"建议到{dept}就诊，由医生明确诊断和治疗。" if dept else "建议到正规医院就诊，由医生明确诊断和治疗。"
        out: list[tuple[str, str, str]] = []
        if "food" in kinds and d.rel.get("avoid_food"):
            x = pick(d.rel["avoid_food"], "cf-food", d.name)
            good = d.rel.get("good_food")
            a = f"这个说法不对。{d.name}患者饮食上一般建议忌吃或少吃{x}，多吃反而可能不利于病情。"
            if good:
                a += f"相对适宜的食物有：{join_list(good, limit=8)}。"
            a += "饮食只能辅助调理，不能代替治疗，具体饮食安排可以咨询医生或营养师。"
            out.append(("food", x, a))
        if "drug" in kinds and d.rel.get("common_drug"):
            o, x = _false_relation(diseases, d, "drug", "common_drug")
            if x:
                a = (f"这个前提不成立。{x}并不是治疗{d.name}的常用药物，它一般用于{o.name}等疾病，用错药不仅无效，还可能延误病情、"
                     f"带来不良反应。{d.name}的常用药物有：{join_list(d.rel['common_drug'], limit=8)}，但是否用药、用哪种药都要由医生"
                     f"根据病情决定，请不要自行购药服用。{see}")
                out.append(("drug", x, a))
        if "symptom" in kinds and d.rel.get("has_symptom"):
            o, x = _false_relation(diseases, d, "symptom", "has_symptom")
            if x:
                a = (f"不能这样判断。{x}并不是{d.name}的常见症状，它更常见于{o.name}等情况。{d.name}的常见症状有："
                     f"{join_list(d.rel['has_symptom'], limit=8)}。单凭一个症状无法确诊，需要医生结合病史、查体和检查综合判断。{see}")
                out.append(("symptom", x, a))
        for kind, x, a in out:
            q = pick(Q[kind], "cf-q", d.name, kind).format(d=d.name, x=x)
            rec = ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                             key=f"cf|{kind}|{d.name}", meta={"disease": d.name, "false_relation": kind, "false_item": x})
            rec["meta"]["origin"] = f"{kg.folder.name}:{d.name}"
            yield rec


def convert_prompt(row: dict, ctx: SourceContext) -> Iterator[dict]:
    cat = str(row.get("category") or "")
    ref = str(row.get("reference_response") or "").strip()
    if not any(s in cat for s in ctx.options["false_premise_categories"]):
        raise Skip("not_a_false_premise")
    if not ref:
        raise Skip("no_reference_response")
    prompt = str(row["prompt"]).strip()
    yield ctx.record([{"role": "user", "content": prompt}, {"role": "assistant", "content": ref}],
                     key=row.get("id") or prompt, meta={"safety_category": cat, "response": "reference"})


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    mode = ctx.options["mode"]
    if mode == "kg":
        for folder in paths:
            yield from kg_records(load_kg_cached(folder, ctx.kg_errors(), ctx.encoding), ctx)
    elif mode == "prompts":
        yield from convert_rows(paths, ctx, convert_prompt, required=("prompt",), types={"prompt": str})
    else:
        raise MingError(f"counterfactual mode {mode!r} is not one of kg, prompts")
