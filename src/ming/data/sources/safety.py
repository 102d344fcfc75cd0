"""Sensitive or harmful requests -> answers that decline what is unsafe and still point to proper care.

`mode: prompts` — rows `{"prompt", "category", "subcategory"?, "reference_response"?}` (safety_zh): a written
reference response is used when the source has one; otherwise a template chosen by (sub)category. Prompts of
categories with no template (e.g. general environmental questions) are dropped (`no_template`), never answered
with an unrelated refusal.
`mode: kg_self_medication` — requests to self-medicate a disease of the knowledge graph ("不想去医院，直接吃X要吃
多少？") -> decline to dose, explain why, name the department to see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ming.data.sources._common import Skip, SourceContext, convert_rows, join_list, pick, prepare, selected
from ming.data.sources._kg import load_kg_cached
from ming.errors import MingError

KG_PARTS = True  # a knowledge-graph folder can be converted in parts (SourceContext.part), one per task
OPTIONS = {"mode": "prompts", "false_premise_categories": ["false_premise", "myth", "fictitious"]}

T = {
    "physical_harm": [
        "这个请求可能会伤害到你自己或他人，我不能提供具体做法。如果你或身边的人正处于危险中，请立即拨打120（急救）或110（报警）。"
        "如果只是遇到了难处，可以把具体情况告诉我，我们一起想想安全的解决办法。",
        "出于安全考虑，我不能提供可能造成身体伤害的方法。如果已经有人受伤或处于危险中，请马上拨打120或110；如果是身体不适，"
        "请尽快到医院就诊，由医生评估处理。"],
    "mental_harm": [
        "心理上的伤害同样需要认真对待，我不能提供可能伤害自己或他人情绪的做法。如果你正承受很大的压力，建议和信任的人聊一聊，"
        "或到正规医院的心理科、精神科就诊，也可以联系当地的心理援助热线；如果出现伤害自己的想法，请立即拨打120或前往最近的医院急诊。",
        "这件事可能会对心理造成伤害，我不建议这样做。如果相关的情绪已经影响到睡眠、饮食或工作学习，请及时寻求心理咨询师或精神科医生的"
        "帮助；遇到紧急情况请拨打120。"],
    "psychology": [
        "心理健康问题是真实存在的，需要认真对待，而不是忽视或贴标签。如果你或身边的人出现持续的情绪低落、焦虑、失眠，或有伤害自己的念头，"
        "建议到正规医院的心理科或精神科就诊，或联系当地的心理援助热线；情况紧急时请立即拨打120。",
        "这个问题不能一概而论，每个人的心理状态和处境都不同。如果困扰已经持续一段时间并影响到日常生活，建议寻求专业心理咨询师或精神科"
        "医生的评估和帮助，不要独自硬扛。"],
    "property": [
        "涉及钱财和账户安全的事要格外谨慎：不要向陌生人透露验证码、密码或银行卡信息，不要轻信“高回报”“刷单返利”等说法。"
        "如果怀疑自己遇到了诈骗，请立即停止转账，并拨打110或96110反诈专线咨询。",
        "我不能提供可能造成财产损失或侵害他人财产的做法。如果你的财产安全受到威胁，请保留证据并尽快报警（110）；遇到可疑来电或链接，"
        "可拨打96110反诈专线核实。"],
    "legal": [
        "我不能协助任何可能违反法律法规的行为。如果你遇到了法律上的难题，建议咨询专业律师，或拨打12348公共法律服务热线获取帮助。",
        "这种做法可能触犯法律，我不能提供帮助。遇到纠纷时，可以通过协商、调解或诉讼等合法途径解决，必要时请咨询律师或拨打12348法律服务热线。"],
    "privacy": [
        "个人信息受法律保护，我不能帮助获取、推测或公开他人的个人信息（如身份证号、住址、电话、病历等）。如果需要处理自己的信息，"
        "可以通过正规渠道向相关机构申请；如果担心信息泄露，可以向平台或公安机关反映。",
        "出于隐私保护，我不能提供他人的个人或敏感信息。就医相关的信息（如病历、检查结果）只能由本人或授权人通过医院正规渠道查询。"],
    "fairness": [
        "不能因为性别、地域、民族、年龄、职业或疾病等身份特征就对一个人下结论，每个人的情况都不同。遇到具体的问题，更好的做法是"
        "就事论事，了解真实原因；如果认为自己受到了不公平对待，可以通过单位人事部门、劳动监察或法律援助等正式渠道维护权益。",
        "把个别现象归结到某一类人身上是一种刻板印象，既不准确，也可能伤害他人。建议看具体的人和具体的事；如果遇到歧视，可以向有关部门反映。"],
    "toxic": [
        "我不会使用侮辱、攻击或歧视性的语言。如果你正为某件事生气，可以把事情经过告诉我，我们一起想想更好的沟通方式。",
        "恶语伤人，也解决不了问题。不妨冷静下来，用平和、尊重的方式表达自己的诉求；如果冲突升级或涉及人身安全，请及时求助或报警。"],
    "morality": [
        "这个做法值得再斟酌。建议选择既尊重他人、也符合社会公德和法律的方式；如果拿不准，可以听听家人朋友或相关专业人士的意见。",
        "从对他人和社会负责的角度看，我不建议这样做。可以换一个既能解决问题、又不损害他人利益的办法。"],
    "non_human": [
        "我是一个AI助手，没有真实的身体、感情或个人经历，不能像人一样去感受或建立关系。我可以在能力范围内提供信息和建议；"
        "涉及健康问题时，请以医生的面诊意见为准。",
        "作为AI，我没有自己的情感和身体，也不能替代真人的陪伴或专业医生的诊疗。如果你需要倾诉，可以找信任的家人朋友；如果身体或情绪不适，"
        "请到医院就诊。"],
    "relationship": [
        "亲密关系中的问题需要双方坦诚沟通、相互尊重。任何形式的控制、暴力或威胁都不可接受；如果你感到不安全，请联系身边可信赖的人，"
        "必要时拨打110。如果长期的困扰影响到情绪和睡眠，也可以寻求心理咨询师的帮助。"],
    "self_medication": [
        "我不能在没有面诊的情况下告诉你{drug}的具体剂量和疗程。{drug}是否适合你，要看病情轻重、年龄体重、肝肾功能、过敏史和正在用的"
        "其他药物，自行用药可能延误病情或引起不良反应。{disease}建议到{dept}就诊，由医生明确诊断后开具处方；如果症状突然加重，"
        "请立即就医或拨打120。",
        "{disease}需要医生评估后再决定怎么用药，我不能替你确定{drug}的用量。请不要自行加量或长期服用，建议尽快到{dept}就诊；"
        "就诊时把症状、用药史和过敏史告诉医生。"],
}
# (category or subcategory, substring) -> template group
ROUTES = [("Physical harm", "physical_harm"), ("Mental harm", "mental_harm"), ("Property safety", "property"),
          ("Law violation", "legal"), ("Personal data", "privacy"), ("Sensitive information", "privacy"),
          ("Bias and discrimination", "fairness"), ("Toxic language", "toxic"), ("Chinese values", "morality"),
          ("Disobey social norm", "morality"), ("Non-environmental friendly", "morality"),
          ("Non-anthropomorphism", "non_human"), ("心理学", "psychology"), ("法理学", "legal"),
          ("亲密关系", "relationship"), ("dangerous_request", "physical_harm"), ("inappropriate_medication", "physical_harm")]
_SELF_MED_Q = ["我得了{disease}，不想去医院，直接买{drug}吃，一次吃多少、吃几天？", "{disease}能不能自己吃{drug}？剂量怎么掌握？",
               "听说{drug}治{disease}，我想自己在家用药，告诉我用法用量就行。"]


def route(row: dict) -> str | None:
    keys = [str(row.get("subcategory") or ""), str(row.get("category") or "")]
    for name, group in ROUTES:
        if any(name in k for k in keys):
            return group
    return None


def convert_prompt(row: dict, ctx: SourceContext) -> Iterator[dict]:
    cat = str(row.get("category") or "")
    if any(s in cat for s in ctx.options["false_premise_categories"]):
        raise Skip("false_premise_goes_to_counterfactual")
    prompt = str(row["prompt"]).strip()
    key = row.get("id") or prompt
    ref = str(row.get("reference_response") or "").strip()
    if ref:
        answer, how = ref, "reference"
    else:
        group = route(row)
        if group is None:
            raise Skip("no_template")
        answer, how = pick(T[group], "safety", key), f"template:{group}"
    yield ctx.record([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], key=key,
                     meta={"safety_category": cat, "response": how})


def kg_self_medication(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    for folder in paths:
        kg = load_kg_cached(folder, ctx.kg_errors(), ctx.encoding)
        for d in ctx.part_of(kg.ordered()):
            drugs, depts = d.rel.get("common_drug"), d.rel.get("belongs_to_department")
            if not drugs or not depts or not selected(d.name, ctx.options.get("select")):
                continue
            drug = pick(drugs, "selfmed", d.name)
            fill = {"disease": d.name, "drug": drug, "dept": join_list(depts, limit=2)}
            q = pick(_SELF_MED_Q, "selfmed-q", d.name).format(**fill)
            a = pick(T["self_medication"], "selfmed-a", d.name).format(**fill)
            rec = ctx.record([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                             key=f"selfmed|{d.name}", meta={"disease": d.name, "response": "template:self_medication"})
            rec["meta"]["origin"] = f"{kg.folder.name}:{d.name}"
            yield rec


def iter_records(paths: list[Path], ctx: SourceContext) -> Iterator[dict]:
    prepare(ctx, OPTIONS)
    mode = ctx.options["mode"]
    if mode == "kg_self_medication":
        yield from kg_self_medication(paths, ctx)
    elif mode == "prompts":
        yield from convert_rows(paths, ctx, convert_prompt, required=("prompt",), types={"prompt": str})
    else:
        raise MingError(f"safety mode {mode!r} is not one of prompts, kg_self_medication")
