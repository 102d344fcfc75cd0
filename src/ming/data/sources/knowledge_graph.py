"""Knowledge graph (diseases + relations) -> natural Chinese QA.

`mode: relations` (MING's "基于结构化医疗图谱的知识问答"): one question per (disease, relation type) over
symptoms, causes of complications, departments, drugs, checks, complications, diet, recipes, susceptible
people, transmission, treatment; the phrasing is chosen deterministically from several per relation, so no
question is asked twice. `mode: passages` (a stand-in for MING's guideline QA, which is not public): the
disease's descriptive texts (description, causes, prevention, clinical features, nursing) answer a question.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from ming.data.sources._common import SourceContext, join_list, pick, prepare, selected, trim_to_sentence
from ming.data.sources._kg import Disease, load_kg_cached
from ming.errors import MingError

KG_PARTS = True  # a knowledge-graph folder can be converted in parts (SourceContext.part), one per task
OPTIONS = {"mode": "relations", "max_items": 15, "min_passage_chars": 30}

Q = {
    "has_symptom": ["{d}有哪些症状？", "{d}的常见表现是什么？", "得了{d}会出现什么症状？", "{d}一般有什么症状表现？",
                    "请问{d}的典型症状有哪些？"],
    "has_complication": ["{d}会引起哪些并发症？", "{d}可能有什么并发症？", "{d}不及时治疗可能导致哪些并发症？"],
    "belongs_to_department": ["{d}应该挂什么科？", "得了{d}去医院看哪个科？", "{d}属于哪个科室诊治？"],
    "common_drug": ["{d}常用哪些药物治疗？", "{d}一般吃什么药？", "治疗{d}的常用药有哪些？"],
    "need_check": ["{d}需要做哪些检查？", "怀疑{d}要做什么检查？", "诊断{d}一般要查哪些项目？"],
    "diet": ["{d}患者饮食上要注意什么？", "得了{d}吃什么好，不能吃什么？", "{d}的饮食宜忌有哪些？"],
    "recommend_recipe": ["{d}有哪些食疗方？", "{d}患者可以吃哪些食疗菜谱？", "适合{d}的食疗方推荐"],
    "susceptible_people": ["哪些人容易得{d}？", "{d}的易感人群是哪些？", "{d}好发于哪些人？"],
    "transmission_way": ["{d}会传染吗？", "{d}有传染性吗？怎么传播？", "{d}是怎么传播的？"],
    "treatment": ["{d}怎么治疗？", "{d}有哪些治疗方法？", "{d}能治好吗？一般怎么治？"],
}
PASSAGE_Q = {
    "desc": ["什么是{d}？", "请介绍一下{d}。", "{d}是一种什么病？"],
    "cause": ["{d}是什么原因引起的？", "{d}的病因有哪些？", "为什么会得{d}？"],
    "prevent": ["如何预防{d}？", "{d}应该怎么预防？", "{d}的预防措施有哪些？"],
    "symptom_detail": ["{d}有哪些临床表现？", "{d}的临床表现是怎样的？"],
    "nursing": ["{d}患者护理上要注意什么？", "{d}病人应该如何护理？"],
}
_HEADING = re.compile(r"^\s*[(（][一二三四五六七八九十]+[)）]\s*[^\n]{0,8}\n")


def _qa(ctx: SourceContext, d: Disease, rel: str, q_opts: list[str], answer: str) -> dict:
    q = pick(q_opts, "kg", d.name, rel).format(d=d.name)
    return ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": answer}],
                      key=f"{d.name}|{rel}", meta={"disease": d.name, "relation": rel})


def relation_records(d: Disease, ctx: SourceContext) -> Iterator[dict]:
    n = ctx.options["max_items"]
    r, a = d.rel, d.attrs
    dept = join_list(r.get("belongs_to_department", []), limit=3)
    go = f"如出现上述表现，建议到{dept}就诊，由医生明确诊断。" if dept else "如出现上述表现，建议及时就医明确诊断。"
    if r.get("has_symptom"):
        yield _qa(ctx, d, "has_symptom", Q["has_symptom"], f"{d.name}的常见症状有：{join_list(r['has_symptom'], limit=n)}。{go}")
    if r.get("has_complication"):
        yield _qa(ctx, d, "has_complication", Q["has_complication"],
                  f"{d.name}可能引起的并发症包括：{join_list(r['has_complication'], limit=n)}。积极治疗、定期复查有助于减少并发症的发生。")
    if dept:
        yield _qa(ctx, d, "belongs_to_department", Q["belongs_to_department"], f"{d.name}一般到{dept}就诊。")
    if r.get("common_drug"):
        yield _qa(ctx, d, "common_drug", Q["common_drug"],
                  f"{d.name}的常用药物有：{join_list(r['common_drug'], limit=n)}。以上只是常见用药，是否用药、用哪种药和剂量都要由医生"
                  "根据具体病情决定，请不要自行购药服用。")
    if r.get("need_check"):
        yield _qa(ctx, d, "need_check", Q["need_check"],
                  f"{d.name}常需要做的检查有：{join_list(r['need_check'], limit=n)}。具体检查项目由接诊医生根据病情安排。")
    if r.get("good_food") or r.get("avoid_food"):
        parts = []
        if r.get("good_food"):
            parts.append(f"宜吃：{join_list(r['good_food'], limit=n)}")
        if r.get("avoid_food"):
            parts.append(f"忌吃：{join_list(r['avoid_food'], limit=n)}")
        extra = ""
        for key in ("good_diet_text", "avoid_diet_text"):
            if isinstance(a.get(key), str) and a[key].strip():
                extra += "\n" + a[key].strip()
        yield _qa(ctx, d, "diet", Q["diet"], f"{d.name}患者的饮食建议——" + "；".join(parts) + "。" + extra)
    if r.get("recommend_recipe"):
        yield _qa(ctx, d, "recommend_recipe", Q["recommend_recipe"],
                  f"{d.name}患者可以参考的食疗方有：{join_list(r['recommend_recipe'], limit=n)}。食疗只能辅助，不能代替正规治疗。")
    sp = a.get("susceptible_people")
    if isinstance(sp, str) and sp.strip():
        text = f"{d.name}没有特定的易感人群，任何人都可能患病。" if "无特定" in sp else f"{d.name}的易感人群：{sp.strip()}。"
        yield _qa(ctx, d, "susceptible_people", Q["susceptible_people"], text)
    tw = a.get("transmission_way")
    if isinstance(tw, str) and tw.strip():
        text = f"{d.name}一般没有传染性。" if "无传染" in tw else f"{d.name}具有传染性，传播途径为：{tw.strip()}。"
        yield _qa(ctx, d, "transmission_way", Q["transmission_way"], text)
    tws = a.get("treat_way")
    if isinstance(tws, list) and tws:
        text = f"{d.name}的治疗方式主要有：{join_list([str(x) for x in tws], limit=n)}。"
        if isinstance(a.get("treat_cycle"), str) and a["treat_cycle"].strip():
            text += f"治疗周期一般为{a['treat_cycle'].strip()}。"
        if isinstance(a.get("cure_prob"), str) and a["cure_prob"].strip():
            text += f"据统计治愈率约为{a['cure_prob'].strip()}，具体因人而异。"
        text += "具体治疗方案需由医生根据病情制定。"
        yield _qa(ctx, d, "treatment", Q["treatment"], text)


def passage_records(d: Disease, ctx: SourceContext) -> Iterator[dict]:
    for key, q_opts in PASSAGE_Q.items():
        text = d.attrs.get(key)
        if not isinstance(text, str):
            continue
        text = _HEADING.sub("", text.strip())
        text = trim_to_sentence(text, min_chars=ctx.options["min_passage_chars"])
        if len(text) < ctx.options["min_passage_chars"]:
            ctx.skip("passage_too_short")
            continue
        yield _qa(ctx, d, key, q_opts, text)


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    mode = ctx.options["mode"]
    if mode not in ("relations", "passages"):
        raise MingError(f"knowledge_graph mode {mode!r} is not one of relations, passages")

    for folder in paths:
        kg = load_kg_cached(folder, ctx.kg_errors(), ctx.encoding)
        for d in ctx.part_of(kg.ordered()):
            if not d.attrs and not d.rel:
                continue
            if not selected(d.name, ctx.options.get("select")):
                continue
            gen = relation_records if mode == "relations" else passage_records
            for rec in gen(d, ctx):
                rec["meta"]["origin"] = f"{kg.folder.name}:{d.name}"
                yield rec
