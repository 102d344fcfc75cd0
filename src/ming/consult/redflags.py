"""Combinations of findings collected over the whole consultation that mean an emergency even when
no single message does. The conversation-level triage of `ming.safety.triage` reads messages; this
reads the controller's normalised findings (so "肚子疼" in turn 1 and "在右下腹，按着更疼，有点发烧"
in turn 2 meet). Each rule: what must be present, and what the patient is told."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ming.consult.state import ConsultState


@dataclass(frozen=True)
class RedFlag:
    id: str
    findings: tuple[str, ...]
    suspicion: str
    advice: str

    def to_dict(self) -> dict:
        return asdict(self)


_EXERTION = ("活动后", "活动时", "运动后", "运动时", "走路", "爬楼", "上楼", "干活", "劳累", "用力")
_PERITONISM = ("走路", "咳嗽时", "弯腰", "按压", "按着")  # triggers that mean movement or pressure makes it worse


def _any(present: set[str], *names: str) -> str | None:
    return next((n for n in names if n in present), None)


def check(state: ConsultState) -> list[RedFlag]:
    present = set(state.present())
    out = []
    rlq = "右下腹痛" in present or ("右下腹" in state.sites and "腹痛" in present)
    fever = _any(present, "发热", "高热", "低热")
    # with fever, a second sign of appendicitis (Alvarado; Schmitt-Thompson abdominal pain: RLQ pain → seen today):
    # tenderness or rebound, pain worse on walking / coughing / bending (peritonism), no appetite, nausea or vomiting
    sign = (_any(present, "反跳痛", "右下腹压痛", "压痛")
            or next((f"{t}时加重" for t in state.triggers if t in _PERITONISM), None)
            or _any(present, "食欲不振", "恶心", "呕吐"))
    if rlq and fever and sign:
        out.append(RedFlag("rlq_pain_tenderness_fever", ("右下腹痛", sign, fever), "急性阑尾炎（急腹症）",
                           f"右下腹疼痛伴发热、{sign}，需警惕急性阑尾炎，请尽快（今天）到医院急诊或普外科就诊，"
                           "就诊前不要吃东西、不要自行服用止痛药。"))
    exertion = next((t for t in state.triggers if t in _EXERTION), None)
    angina = _any(present, "胸痛", "胸闷")
    if angina and exertion:  # Schmitt-Thompson chest pain: brought on by exertion → seen within hours
        out.append(RedFlag("exertional_chest_pain", (angina, f"{exertion}时加重"), "心绞痛/冠心病（劳力性胸痛）",
                           f"{angina}在{exertion}时出现或加重，需警惕心绞痛（冠心病），请今天就到医院心内科或急诊就诊，"
                           "就诊前避免用力活动；如果疼痛持续超过15分钟、休息后不缓解，或伴出冷汗、气短、恶心，"
                           "请立即拨打120。"))
    losing = _any(present, "腹泻", "呕吐")
    if state.child and losing and state.dehydration:
        out.append(RedFlag("child_dehydration", (losing, state.dehydration[0]), "儿童脱水",
                           f"孩子{losing}并出现脱水表现（{state.dehydration[0]}），请今天尽快带孩子到医院儿科或急诊就诊；"
                           "路上少量多次喂口服补液盐；如果叫不醒、不喝水或几个小时没有小便，请立即拨打120。"))
    # black, tarry stool or vomited blood: an upper gastrointestinal bleed until shown otherwise (NICE CG141: assess
    # the same day; dizziness, fainting, palpitations or pallor mean blood loss that is already large)
    bleed = _any(present, "黑便", "呕血")
    if bleed:
        shock = _any(present, "头晕", "晕厥", "心悸", "面色苍白", "乏力", "冷汗")
        out.append(RedFlag("gi_bleeding", (bleed,) + ((shock,) if shock else ()), "上消化道出血",
                           f"{bleed}{'伴' + shock if shock else ''}需警惕上消化道出血，请今天尽快到医院急诊就诊，暂时不要进食；"
                           "如果出现呕血、头晕加重、心慌、出冷汗或晕倒，请立即拨打120。"))
    # skin (hives, itch, swelling) with the airway or circulation (throat tightness, breathlessness, wheeze, fainting):
    # anaphylaxis (WAO 2020 criteria), emergency care now
    skin = _any(present, "风团", "丘疹", "皮疹", "瘙痒")
    airway = _any(present, "喉头发紧", "呼吸困难", "晕厥", "声音嘶哑")
    if skin and airway:
        out.append(RedFlag("anaphylaxis", (skin, airway), "严重过敏反应（过敏性休克风险）",
                           f"{skin}同时出现{airway}，需警惕严重过敏反应，这是急症：请立即拨打120或马上去最近医院的急诊；"
                           "有医生开的肾上腺素自动注射笔请立即使用，停止接触可疑的食物或药物。"))
    chest = _any(present, "胸痛", "呼吸困难", "气短", "咯血")
    leg = _any(present, "下肢水肿", "水肿") if ("下肢水肿" in present or state.long_travel) else None
    if chest and leg:
        travel = "，且近期长途乘坐飞机/车或久坐" if state.long_travel else ""
        out.append(RedFlag("chest_pain_leg_swelling", (chest, leg) + (("长途旅行/久坐",) if state.long_travel else ()),
                           "肺栓塞（下肢深静脉血栓脱落）",
                           f"{chest}伴腿部肿胀{travel}，需警惕肺栓塞，这是急症：请立即拨打120或马上去最近医院的急诊。"))
    return out
