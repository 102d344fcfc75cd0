"""The assessment at the end of a consultation: 初步判断 (up to three candidates, each with the
findings that support it), 建议检查 and 就诊科室 from the KB, 何时就医, 注意事项 — every fact named
with the disease it comes from. `text` is the template rendering; `instruction` asks the model to
turn the same facts into sentences without adding any."""

from __future__ import annotations

import re

from ming.consult.questions import pelvic_complaint
from ming.consult.rank import Candidate
from ming.consult.redflags import RedFlag
from ming.consult.state import ConsultState
from ming.kb.store import KB

DISCLAIMER = "以上为根据您提供的信息和医学知识库做出的初步分析，不能代替医生面诊；如症状加重请及时就医。"
GENERIC_DEPTS = {"内科", "外科", "其他科室", "其他", "儿科", "妇产科", "五官科", "皮肤性病科", "中医科"}
URGENT_SYMPTOMS = ("高热", "便血", "黑便", "咯血", "晕厥", "胸痛", "呼吸困难", "反跳痛", "剧痛", "血尿", "阴道出血", "抽搐")
_LONG = re.compile(r"(\d+|[一二两三四五六七八九十几半]+)\s*(?:个)?\s*(?:月|年)|很久|好久|多年")


def department(kb: KB, name: str) -> str | None:
    depts = (kb.disease(name) or {}).get("departments", [])
    specific = [d for d in depts if d not in GENERIC_DEPTS]
    return (specific or depts or [None])[0]


def urgency(state: ConsultState, flags: list[RedFlag]) -> tuple[str, str]:
    if flags:
        return "emergency", flags[0].advice
    urgent = [s for s in URGENT_SYMPTOMS if s in state.present()]
    if state.temperature is not None and state.temperature >= 39.0:
        urgent.append(f"体温{state.temperature:g}℃")
    if urgent:
        return "soon", f"您提到{'、'.join(urgent)}，建议在24小时内到医院就诊；如明显加重请立即去急诊。"
    if any(_LONG.search(d) for d in state.duration):
        return "routine", "症状已持续较长时间，建议近期（一周内）到相应科室门诊就诊，明确原因。"
    return "routine", "如症状在2–3天内没有好转或出现加重、高热、剧烈疼痛等情况，请及时到医院就诊。"


def build(state: ConsultState, kb: KB, cands: list[Candidate], flags: list[RedFlag]) -> dict:
    top = [c for c in cands[:3] if c.supporting] or cands[:1]
    items = []
    for c in top:
        items.append({"name": c.name, "prob": round(c.prob, 4), "supporting": c.supporting, "against": c.against,
                      "checks": kb.common_checks(c.name, 3), "department": department(kb, c.name)})
    checks: list[str] = []
    for it in items:
        for ch in it["checks"]:
            if ch not in checks and len(checks) < 5:
                checks.append(ch)
    depts = [it["department"] for it in items if it["department"]]
    level, when = urgency(state, flags)
    cautions = []
    if items and not flags:  # the top disease's nursing text is routine care: no place in an emergency's advice
        d = kb.disease(items[0]["name"]) or {}
        note = next((x.strip() for x in re.split(r"[\n。]", (d.get("nursing") or "") + "\n" + (d.get("prevent") or ""))
                     if len(x.strip()) >= 12 and not x.strip().endswith("…")), "")
        note = re.sub(r"^[(（]?[\d⑴-⒇一二三四五六七八九十]{1,2}[)）]?[、.．:：]?\s*", "", note)
        if note:
            cautions.append(f"{items[0]['name']}（知识库）：{note[:80]}。")
    if state.allergy and not any("否认" in a for a in state.allergy):
        cautions.append(f"您提到过敏（{state.allergy[0]}），就诊时请告诉医生，避免使用相关药物。")
    if pelvic_complaint(state):  # a woman's lower-abdominal pain: ectopic pregnancy first (and torsion, PID)
        if state.sex is None:
            cautions.append("如为育龄女性，下腹痛还需排除宫外孕（异位妊娠）、卵巢囊肿蒂扭转、盆腔炎等，就诊时请告诉医生末次月经。")
        elif state.reproductive_female() and state.pregnant() is not False:
            cautions.append("育龄女性下腹痛需先排除宫外孕（异位妊娠）：请告诉医生末次月经，必要时查尿或血妊娠试验。")
    if state.pregnancy and not any("否认" in p for p in state.pregnancy):
        cautions.append("如有怀孕可能，用药和影像检查前请先告诉医生。")
    cautions.append("不要自行使用抗生素或止痛药掩盖症状；用药请遵医嘱。")
    out = {"candidates": items, "checks": checks, "departments": list(dict.fromkeys(depts)), "urgency": level,
           "when": when, "cautions": cautions, "red_flags": [f.to_dict() for f in flags], "kb": kb.source}
    out["text"] = render(state, out)
    out["instruction"] = instruction(out)
    return out


def _findings_line(state: ConsultState) -> str:
    parts = []
    if state.present():
        parts.append("、".join(state.present()[:8]))
    if state.sites:
        parts.append("部位：" + "、".join(state.sites[:3]))
    if state.duration:
        parts.append("时间：" + "、".join(state.duration[:2]))
    if state.absent():
        parts.append("无" + "、无".join(state.absent()[:5]))
    return "；".join(parts)


def render(state: ConsultState, a: dict) -> str:
    lines = []
    if a["urgency"] == "emergency":
        lines.append(f"⚠️ {a['when']}")
        lines.append("")
    known = _findings_line(state)
    if known:
        lines.append(f"根据您目前提供的情况（{known}）：")
    # an emergency names what the red flag suspects first (a doctor escalating a black stool says "上消化道出血"
    # before whatever the symptom ranking has on top), then the ranked candidates
    flagged = list(dict.fromkeys(re.sub(r"[（(].*$", "", f["suspicion"]) for f in a["red_flags"]))
    if a["candidates"] and flagged:
        names = [c["name"] for c in a["candidates"] if not any(c["name"] in f for f in flagged)]
        rest = f"，其次考虑{'、'.join(names)}" if names else ""
        lines.append(f"初步判断：最可能是{'、'.join(flagged)}（需急诊排除）{rest}。")
    elif a["candidates"]:
        names = [c["name"] for c in a["candidates"]]
        rest = f"，其次考虑{'、'.join(names[1:])}" if len(names) > 1 else ""
        lines.append(f"初步判断：最可能是{names[0]}{rest}。")
        for i, c in enumerate(a["candidates"], 1):
            sup = "、".join(c["supporting"][:5]) or "（症状线索有限）"
            extra = f"；不支持：无{'、无'.join(c['against'][:3])}" if c["against"] else ""
            lines.append(f"{i}. {c['name']} —— 支持：{sup}（知识库中{c['name']}的表现）{extra}")
        if a["checks"]:
            src = "；".join(f"{c['name']}：{'、'.join(c['checks'])}" for c in a["candidates"] if c["checks"])
            lines.append(f"建议检查：{'、'.join(a['checks'])}（依据知识库 {src}）")
        if a["departments"]:
            lines.append(f"就诊科室：{'、'.join(a['departments'])}")
    else:
        lines.append("初步判断：目前信息不足以判断可能的疾病，建议到医院当面就诊。")
    if a["urgency"] != "emergency":
        lines.append(f"何时就医：{a['when']}")
    lines.append("注意事项：" + " ".join(a["cautions"]))
    lines.append(DISCLAIMER)
    return "\n".join(lines)


def instruction(a: dict) -> str:
    return ("你是问诊医生，现在给出问诊结论。只能使用下面列出的事实，不要添加新的疾病、检查或药物，"
            "用通俗的中文分条说明：初步判断（每个可能的疾病及支持它的表现）、建议检查、就诊科室、何时就医、注意事项，"
            "最后提醒这不能代替面诊。\n事实：\n" + a["text"])
