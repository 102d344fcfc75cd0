"""What one patient message says, read by rules (no model): symptoms with polarity, body site,
character of pain, onset and duration, triggers, age and sex, and whether the message is a bare
yes / no / don't-know, says there is nothing more, asks its own question, or asks for the verdict.
History items (past illness, medication, allergies, pregnancy) are read here when the patient
volunteers them; a short answer to the controller's own question is attributed in `ming.consult.state`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ming.kb.symptoms import Lexicon, Mention, normalize_text

SITES = ("右下边", "右下方", "右边下面", "右下面", "左下边", "左下方", "左边下面", "右边肋骨下面", "右肋骨下面", "右肋下", "右胁",
         "肚脐周围", "肚脐眼", "心口窝", "后脑勺", "会阴", "裤裆", "右下腹", "左下腹", "右上腹", "左上腹", "上腹", "下腹", "小腹", "小肚子", "脐周", "肚脐", "胃部", "心口", "胸口", "胸部",
         "胸骨后", "后背", "背部", "腰部", "腰", "头部", "额头", "后脑", "太阳穴", "咽喉", "嗓子", "喉咙", "膝盖", "膝关节", "脚踝", "崴", "脚",
         "关节", "小腿", "大腿", "脚踝", "手腕", "肩膀", "颈部", "脖子", "眼睛", "耳朵", "牙", "皮肤", "全身", "浑身")
SITE_CANON = {"右下边": "右下腹", "右下方": "右下腹", "右边下面": "右下腹", "右下面": "右下腹", "左下边": "左下腹", "左下方": "左下腹",
              "左边下面": "左下腹", "右边肋骨下面": "右上腹", "右肋骨下面": "右上腹", "右肋下": "右上腹", "右胁": "右上腹",
              "肚脐周围": "脐周", "肚脐眼": "脐周", "心口窝": "上腹", "后脑勺": "后脑", "裤裆": "会阴", "小腹": "下腹", "小肚子": "下腹", "肚脐": "脐周", "心口": "上腹", "胃部": "上腹", "胸口": "胸", "胸部": "胸", "后背": "背",
              "背部": "背", "腰部": "腰", "头部": "头", "嗓子": "咽", "喉咙": "咽", "咽喉": "咽", "膝盖": "膝关节",
              "脖子": "颈部", "浑身": "全身", "崴": "脚踝"}
_SITE_RE = re.compile("|".join(sorted(SITES, key=len, reverse=True)))
_PAIN_WORD = re.compile(r"(?<![不没])(?:疼|痛)")
CHARACTER = re.compile(r"隐痛|胀痛|绞痛|刺痛|钝痛|酸痛|灼痛|烧灼|剧痛|针扎|刀割|压榨|撕裂|跳痛|闷痛|一阵一阵|阵发|"
                       r"持续性?(?:疼|痛)|一直(?:疼|痛)|时好时坏|放射|牵扯|越来越(?:疼|痛|重|厉害)|疼得厉害|特别疼|很疼")
_NUM = r"(?:\d+(?:\.\d+)?|[一二两三四五六七八九十半几百]+)"
DURATION = re.compile(_NUM + r"\s*(?:多|来)?\s*(?:个)?\s*(?:多|来)?\s*(?:小时|钟头|天|日|周|星期|礼拜|月|年)(?:多|左右|了|来)?|"
                      r"昨天|昨晚|前天|今天|今早|今晚|早上|刚才|刚刚|上周|上个月|最近|近期|这几天|这两天|前几天|半年|"
                      r"一周内|一个月内|一年多|很久|好久|多年|从小|突然|慢慢")
TRIGGER = re.compile(r"(?:饭后|吃饭后|进食后|吃完饭|空腹|饿的时候|活动后|活动时|运动后|运动时|走路|爬楼|上楼|干活|劳累|用力|受凉|着凉|淋雨|熬夜|喝酒|饮酒|"
                     r"吃了(?![^，。；,]{0,8}药)[^，。；,]{1,8}|吃辣|油腻|生冷|晚上|夜间|夜里|早上起来|晨起|咳嗽时|深呼吸|弯腰|久坐|久站|"
                     r"坐飞机|长途飞行|长途|接触[^，。；,]{1,6}|按压|按着|站起来|起身|蹲起|转头|躺下|翻身|低头)")
LONG_TRAVEL = re.compile(r"长途飞行|坐了?[^，。；,]{0,6}飞机|长途(?:旅行|坐车|汽车|火车)|坐了?[^，。；,]{0,4}(?:十|\d{2})[^，。；,]{0,3}小时"
                         r"(?:的)?(?:车|飞机|火车)|久坐|长时间坐|卧床")
TEMPERATURE = re.compile(r"(?<![\d.])(3[5-9]|4[0-2])(?:\.(\d))?\s*(?:度|℃|°C?)")
AGE = re.compile(r"(\d{1,3})\s*(?:岁|周岁)|(\d{1,2})\s*个月大?")
SEX_F = re.compile(r"女性|女孩|女儿|女生|女士|妈妈|母亲|老婆|妻子|怀孕|月经|例假|孕|白带|阴道|痛经|乳房|乳腺|子宫|卵巢|宫颈|外阴|(?:^|[，,。\s])女(?:[，,。\s]|$)|性别[:：]?\s*女")
SEX_M = re.compile(r"男性|男孩|儿子|男生|先生|爸爸|父亲|老公|丈夫|前列腺|睾丸|阴茎|阴囊|包皮|龟头|早泄|阳痿|勃起|遗精|(?:^|[，,。\s])男(?:[，,。\s]|$)|性别[:：]?\s*男")
HISTORY = re.compile(r"既往|以前(?:得过|有过|患过)|病史|医生说是|诊断(?:为|是|过)|确诊|老毛病|得过|患有|高血压|糖尿病|心脏病|冠心病|哮喘|慢性[\u4e00-\u9fff]{1,6}|"
                     r"做过[^，。；,]{0,6}手术|手术史|[\u4e00-\u9fff]{1,6}术后")
MEDICATION = re.compile(r"吃了?[^，。；,]{0,10}药|服用|用了?[^，。；,]{0,8}(?:药|膏|片|胶囊|颗粒)|输液|打针|吊瓶|"
                        r"[\u4e00-\u9fff]{2,8}(?:片|胶囊|颗粒|口服液|软膏|乳膏|注射液)|布洛芬|对乙酰氨基酚|阿莫西林|头孢|"
                        r"(?:没|没有|未)(?:吃|用)(?:过)?(?:任何)?药")
ALLERGY = re.compile(r"过敏")
PREGNANCY = re.compile(r"怀孕|妊娠|孕\d|孕期|备孕|停经|月经推迟|末次月经|例假(?:推迟|没来)|月经(?:没来|推迟)|哺乳|"
                       r"同房|性生活|避孕|验孕|试纸|hcg")
# a late period said, without yet saying whether a pregnancy is possible (the pregnancy question then comes first)
LATE_PERIOD = re.compile(r"停经|(?:月经|例假|大姨妈)[^，,。；;]{0,3}(?:推迟|没来|不来|晚了)|(?:月经|例假)[^，,。；;]{0,3}(?:过了|超过)")
YES = re.compile(r"^(?:有|有的|有点|有一点|是|是的|对|对的|嗯|会|会的|有过|经常|偶尔|有些)(?:[。！!，,\s]|$)")
NO = re.compile(r"^(?:没有|没|无|不|不是|没呢|都没有|也没有|也没|不会|没发现|未|否|都没)[。！!，,\s]*$|"
                r"^(?:没有|没|无|都没有|也没有)(?:过|的|呢|啊)?[。！!，,\s]*$")
UNKNOWN = re.compile(r"不知道|不清楚|不太清楚|不确定|说不上来|记不清|没注意|没量|没测|忘了")
NOTHING_MORE = re.compile(r"没别的|没有别的|没其他|没有其他|就这些|就这样|其他(?:都)?(?:还)?(?:好|没有|正常)|别的(?:都)?没有|没什么了")
VERDICT = re.compile(r"(?:最可能|到底|究竟)?是什么病|什么问题|(?:直接|请)?告诉我(?:诊断|结果|是什么)|诊断(?:是什么|一下)?[？?]?$|"
                     r"请以“诊断|给个(?:诊断|判断)")
CHILD = re.compile(r"孩子|宝宝|宝贝|小孩|娃|儿子|女儿|闺女|婴儿|新生儿|幼儿|患儿|小朋友|小儿|男宝|女宝|孙子|孙女|外孙|幼儿园|吃奶|喂奶|奶粉")
# what a parent says about a child's fluids (the hydration question's answer) and the signs that mean dehydration
# (WHO IMCI: lethargic, sunken eyes, drinks poorly; NICE CG84: reduced urine output, no tears, dry mouth)
HYDRATION = re.compile(r"尿|小便|尿布|眼泪|喝水|喝奶|吃奶|精神|嘴唇|口干")
DEHYDRATION = re.compile(r"(?:尿|小便|尿布)[^，,。；;]{0,6}(?:少|没|不湿|干|很久)|没(?:怎么)?(?:尿|小便)|"
                         r"(?:哭|哭的时候)[^，,。；;]{0,3}没(?:有)?眼泪|没(?:有)?眼泪|眼窝[^，,。；;]{0,3}(?:凹|陷)|"
                         r"嘴唇[^，,。；;]{0,3}(?:干|裂)|精神(?:很|特别|非常)?(?:差|不好|萎靡)|(?<!不)蔫|没精神|叫不醒|"
                         r"(?:不|不肯|不愿意|喝不进|吃不进)(?:喝水|喝奶|吃奶)")
# what the patient's story says happened, which some diagnoses need (an injury, a poisoning or exposure, an
# operation or treatment, a stay in hospital): without it the ranking holds such diagnoses back
CONTEXT = {
    "injury": re.compile(r"摔|跌倒|跌伤|撞|碰到|碰伤|砸|扭到|扭了|崴|外伤|受伤|伤到|伤口|车祸|打架|被[^，,。；;]{0,4}(?:咬|蜇|叮|烫|烧|划|割|刺|打)|"
                         r"烫伤|烧伤|割伤|划伤|异物|卡住|卡在|吞了|运动后|打球|跑步|拉伤|骨折|扭伤|挫伤"),
    "exposure": re.compile(r"中毒|误服|误食|吃错|吸入|煤气|一氧化碳|化学|农药|油漆|装修|甲醛|粉尘|高温|暴晒|晒了|中暑|天热|天气热|太阳底下|大太阳|日头|闷热|热天|大热天|潜水|高原|"
                           r"喝了[^，,。；;]{0,4}酒|喝多了|醉|过量|吃了[^，,。；;]{0,8}(?:药|蘑菇|河豚|变质|坏了|隔夜)|有(?:点)?味道|不新鲜|"
                           r"接触[^，,。；;]{0,6}(?:鸡|鸭|鸽|鸟|禽|猫|狗|宠物|动物|老鼠|牲畜)|养[^，,。；;]{0,3}(?:鸡|鸭|鸽|鸟|猫|狗)|"
                           r"出国|国外|旅游|旅行回来|从[^，,。；;]{1,6}回来|疫区|热带"),
    "treatment": re.compile(r"手术|术后|开刀|移植|透析|放疗|化疗|输血|疫苗|打针|输液|吃了[^，,。；;]{0,8}药|服用|用药"),
    "hospital": re.compile(r"住院|ICU|icu|监护室|重症|呼吸机|插管"),
    "menses": re.compile(r"月经|例假|大姨妈|经期|痛经|来事"),
}
OWN_QUESTION = re.compile(r"[？?]|吗[。！!\s]*$|呢[。！!\s]*$|怎么办|能不能|可不可以|要不要|需不需要|该不该|"
                          r"是不是|会不会|严重吗|吃什么药|用什么药|怎么治|能吃|可以吃|要紧")


@dataclass
class Findings:
    """The history items a message can tell (and a consultation collects)."""

    sites: list[str] = field(default_factory=list)
    character: list[str] = field(default_factory=list)
    duration: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    long_travel: bool = False
    age: float | None = None
    sex: str | None = None
    history: list[str] = field(default_factory=list)
    medication: list[str] = field(default_factory=list)
    allergy: list[str] = field(default_factory=list)
    pregnancy: list[str] = field(default_factory=list)
    temperature: float | None = None  # highest body temperature the patient gave (℃)
    child: bool = False  # the patient is a child (孩子, 宝宝 … or an age under 14)
    dehydration: list[str] = field(default_factory=list)  # signs of dehydration said (尿少, 哭没眼泪, 蔫 …)
    hydration: list[str] = field(default_factory=list)  # what was said about urine, tears, drinking
    context: list[str] = field(default_factory=list)  # CONTEXT keys the story tells (injury, exposure, treatment, hospital)
    pain_sites: list[str] = field(default_factory=list)  # sites said in a clause that says it hurts ("右边肋骨下面疼")
    spans: list[str] = field(default_factory=list)  # how long the complaint has lasted: durations said beside a symptom,
    # or a short answer ("两个多月了"); not the dates of the history ("2017年做过手术", "术后半年内")


@dataclass
class MessageFacts(Findings):
    text: str = ""
    mentions: list[Mention] = field(default_factory=list)
    yes: bool = False
    no: bool = False
    unknown: bool = False
    nothing_more: bool = False
    asks_verdict: bool = False
    question: str = ""  # the patient's own question, if the message asks one

    @property
    def informative(self) -> bool:
        return bool(self.mentions or self.sites or self.character or self.duration or self.triggers or self.history
                    or self.temperature is not None
                    or self.medication or self.allergy or self.pregnancy or self.age is not None or self.sex)


def _clauses_matching(text: str, pattern: re.Pattern) -> list[str]:
    return [c.strip() for c in re.split(r"[，,。；;！!？?\n]", text) if c.strip() and pattern.search(c)]


def own_question(text: str) -> str:
    """The sentences of a patient message that ask the doctor something."""
    parts = re.split(r"(?<=[。！!？?\n；;])", text)
    return "".join(p for p in parts if OWN_QUESTION.search(p.strip())).strip()


# chronic conditions the KB also lists as symptoms: said by a patient they are history ("有高血压十来年"), not a
# complaint, and stay out of the symptoms (the history keeps them, and the ranking reads a known disease from it)
CONDITION_NAMES = {"高血压", "糖尿", "糖尿病", "冠心病", "高血脂", "高脂血症", "血脂高"}
# a blood-pressure reading ("150/98", "血压160/100"): high when systolic ≥ 140 or diastolic ≥ 90 (a measured finding)
BP = re.compile(r"(?<![\d/])(\d{2,3})\s*/\s*(\d{2,3})(?![\d/])")


def _bp_mentions(t: str) -> list[Mention]:
    out = []
    for m in BP.finditer(t):
        sys_, dia = int(m.group(1)), int(m.group(2))
        if 60 <= sys_ <= 260 and 30 <= dia <= 160 and sys_ > dia and (sys_ >= 140 or dia >= 90):
            out.append(Mention("血压高", m.group(0), m.start(), m.end(), "present"))
    return out


def read_message(text: str, lexicon: Lexicon) -> MessageFacts:
    t = normalize_text(text).strip()
    f = MessageFacts(text=t)
    f.mentions = [m for m in lexicon.mentions(t) if m.canonical not in CONDITION_NAMES]
    f.mentions += _bp_mentions(t)
    f.sites = list(dict.fromkeys(SITE_CANON.get(s, s) for s in _SITE_RE.findall(t)))
    f.pain_sites = list(dict.fromkeys(SITE_CANON.get(s, s) for c in re.split(r"[，,。；;！!？?\n]", t)
                                      if _PAIN_WORD.search(c) for s in _SITE_RE.findall(c)))
    f.character = list(dict.fromkeys(CHARACTER.findall(t)))
    f.duration = list(dict.fromkeys(m.group(0) for m in DURATION.finditer(t)))
    brief = len(t) <= 20
    f.spans = [m.group(0) for c in re.split(r"[，,。；;！!？?\n]", t) if brief or lexicon.mentions(c)
               for m in DURATION.finditer(c)]
    f.triggers = list(dict.fromkeys(TRIGGER.findall(t)))
    f.long_travel = bool(LONG_TRAVEL.search(t))
    temps = [float(f"{a}.{b or 0}") for a, b in TEMPERATURE.findall(t)]
    if temps:
        f.temperature = max(temps)
    m = AGE.search(t)
    if m:
        f.age = float(m.group(1)) if m.group(1) else float(m.group(2)) / 12
    f.child = bool(CHILD.search(t)) or (f.age is not None and f.age < 14)
    f.hydration = _clauses_matching(t, HYDRATION)
    f.dehydration = [c for c in f.hydration if DEHYDRATION.search(c) and not re.search(r"正常|还行|还好|挺好|不少", c)]
    if SEX_F.search(t):
        f.sex = "女"
    elif SEX_M.search(t):
        f.sex = "男"
    f.history = _clauses_matching(t, HISTORY)
    f.context = [k for k, rx in CONTEXT.items() if rx.search(t)]
    f.medication = _clauses_matching(t, MEDICATION)
    f.allergy = _clauses_matching(t, ALLERGY)
    f.pregnancy = _clauses_matching(t, PREGNANCY)
    short = len(t) <= 12
    # "不知道" / "这个我不太清楚，没有注意到别的情况" with no symptom in it answers "unknown"
    f.unknown = len(t) <= 30 and bool(UNKNOWN.search(t)) and not f.mentions
    f.no = not f.unknown and bool(NO.match(t)) and short
    f.yes = not f.no and not f.unknown and bool(YES.match(t))
    f.nothing_more = bool(NOTHING_MORE.search(t))
    f.asks_verdict = bool(VERDICT.search(t))
    f.question = "" if f.asks_verdict else own_question(t)
    return f
