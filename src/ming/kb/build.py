"""Build the knowledge-base index: `entities.jsonl` + `triples.jsonl` (the medical_kg schema) → one
pickle under $MING_HOME/kb/ with the diseases, their symptoms (as canonical concepts), checks,
departments, drugs, complications and short descriptions, plus the inverted symptom index. The
index records the size and mtime of each source file and the symptom table's sha256, so a changed
source or table is noticed (`stale_reason`)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ming import envs
from ming.errors import MingError
from ming.kb.symptoms import Lexicon, read_table

INDEX_VERSION = 5
SOURCE_FILES = ("entities.jsonl", "triples.jsonl")
RELATIONS = {"has_symptom": "symptoms", "need_check": "checks", "belongs_to_department": "departments",
             "common_drug": "drugs", "has_complication": "complications"}
UNKNOWN_LICENCE = "not stated (no README with a '**Licence' line next to the KB files)"
_ALIAS = re.compile(r"(?:又称|亦称|俗称|简称|又名|别称|也称|也叫|俗名)(?:为)?[“\"「『]?([\u4e00-\u9fff]{2,12})")
# who a disease can affect, from its name and departments (the ranking checks these against age / sex)
GROUPS = {
    "child": (re.compile(r"^(?:小儿|婴儿|新生儿|婴幼儿|儿童|幼儿|新生)"), {"儿科", "小儿内科", "小儿外科", "新生儿科"}),
    "elderly": (re.compile(r"^老年"), set()),
    "pregnancy": (re.compile(r"妊娠|孕|产后|产褥|分娩|流产|胎|羊水|胎盘|早产|难产"), {"产科"}),
    "female": (re.compile(r"子宫|卵巢|输卵管|阴道|外阴|乳腺|乳房|月经|盆腔|宫颈|闭经|痛经|白带"), {"妇科"}),
    "male": (re.compile(r"前列腺|睾丸|阴茎|精索|阴囊|附睾|包皮|精液|阳痿|早泄"), {"男科"}),
}
TEXT_LIMITS = {"desc": 300, "nursing": 160, "prevent": 160, "susceptible_people": 60}
# who a disease mostly affects, from its page's 易感人群 ("好发于婴幼儿", "多见于老年人", "女性"): a softer
# signal than GROUPS (a predominance, not a rule), read only when the text names no other group
_PEOPLE_CHILD = re.compile(r"儿童|小儿|婴|幼儿|新生儿|早产儿|患儿|\d+岁以下")
_PEOPLE_ADULT = re.compile(r"成人|成年|青年|中年|老年|老人|妇女|女性|男性|孕|产妇|各年龄|普遍|人群|患者")
_PEOPLE_ELDERLY = re.compile(r"老年|老人|(?<!\d)[5-9]0岁以上")
_PEOPLE_NOT_ELDERLY = re.compile(r"儿童|小儿|婴|幼儿|青年|青少年|青壮年|各年龄")
_PEOPLE_FEMALE = re.compile(r"女性|妇女|^女$|女性多见|多发女性")
_PEOPLE_MALE = re.compile(r"男性|^男$")
_PEOPLE_PREGNANCY = re.compile(r"^(?:好发于|多见于|多发于|见于)?(?:孕妇|妊娠期|孕产|孕期|产妇|产后|哺乳期)")
_PEOPLE_NONE = re.compile(r"^无特|^无多发|^普遍易感")
# what kind of diagnosis a name is (the ranking asks for more evidence before offering such a one):
# named after the pathogen a culture finds, after a person (Latin letters, 氏), a syndrome, congenital or
# hereditary, a tumour, a critical state (shock, coma, failure: not a patient typing), TCM-only (中医科), or one
# that needs a history the patient must tell: an injury, a poisoning or exposure, an operation or treatment, a
# stay in hospital
KINDS = {
    "pathogen": re.compile(r"杆菌|球菌|单胞菌|弧菌|螺旋体|螺菌|支原体|衣原体|立克次|真菌|霉菌|念珠菌|隐球菌|曲霉|曲菌|放线菌|"
                           r"诺卡|孢子|原虫|阿米巴|吸虫|绦虫|线虫|钩虫|蛔虫|蛲虫|鞭虫|丝虫|疟|病毒|菌病|菌感染|菌性|军团菌|"
                           r"李斯特|布鲁|耶尔森|沙门|志贺|弯曲菌|梭菌|嗜血|克雷|巴斯德|钩端|结核|麻风|梅毒|艾滋|狼疮"),
    "eponym": re.compile(r"[A-Za-z]|氏"),
    "syndrome": re.compile(r"综合征|综合症|症候群"),
    "congenital": re.compile(r"先天|遗传|家族性|畸形|发育不良|发育不全|缺如"),
    "tumour": re.compile(r"癌|瘤|白血病|恶性|肉芽肿|转移"),
    "injury": re.compile(r"伤(?!寒|风|食|暑|湿|阴|阳|津|精|乳)|骨折|脱位|撕裂|断裂|破裂|异物|震荡"),
    "exposure": re.compile(r"中毒|吸入|误服|过量|放射病|高原|减压病|潜水|电击|溺水|中暑|禽|鼠疫|炭疽|狂犬|鹦鹉|猫抓|兔热|"
                           r"地方性|输入性|热带"),
    "treatment": re.compile(r"术后|手术后|移植|透析|放射性|放疗|化疗|药物性|药源性|医源性|注射|输血|疫苗"),
    "hospital": re.compile(r"院内|医院获得|呼吸机|导管相关|监护"),
    "critical": re.compile(r"休克|昏迷|猝死|危象|脑疝|窘迫|衰竭|多器官|暴发"),
}
TCM_DEPTS = {"中医科", "中医综合"}
# a TCM pattern filed under a Western department (肺热 under 呼吸内科, 胃热, 肝火): an organ with a heat / cold / deficiency
TCM_NAME = re.compile(r"^(?:肺|胃|肝|心|脾|肾|胆|大肠|小肠|膀胱)(?:热|火|寒|虚|实|燥|湿热|阴虚|阳虚|气虚|血虚|气滞|血瘀)$|"
                      r"气滞血瘀|肝郁|湿热下注|痰湿|阴虚火旺")


def people_groups(people: str) -> list[str]:
    """The groups a disease mostly affects, read from its 易感人群 text (empty when it names none)."""
    t = re.sub(r"\s", "", people or "").strip("。.")
    if not t or _PEOPLE_NONE.search(t):
        return []
    out = []
    if _PEOPLE_CHILD.search(t) and not _PEOPLE_ADULT.search(re.sub(r"儿童和青少年|儿童及青少年|学龄前儿童", "", t)):
        out.append("child")
    if _PEOPLE_ELDERLY.search(t) and not _PEOPLE_NOT_ELDERLY.search(t):
        out.append("elderly")
    female, male = bool(_PEOPLE_FEMALE.search(t)), bool(_PEOPLE_MALE.search(t))
    if female != male and not re.search(r"多于|略多|居多", t) and not _PEOPLE_CHILD.search(t):  # "女性和儿童": not one sex
        out.append("female" if female else "male")
    if _PEOPLE_PREGNANCY.search(t):
        out.append("pregnancy")
    return out


def name_kinds(name: str, departments) -> list[str]:
    out = [k for k, rx in KINDS.items() if rx.search(name)]
    if (departments and set(departments) <= TCM_DEPTS) or TCM_NAME.search(name):
        out.append("tcm")
    return out


@dataclass
class BuildReport:
    source: Path
    index: Path
    seconds: float
    counts: dict
    problems: list[str] = field(default_factory=list)
    n_problems: int = 0


def kb_source(path: str | Path | None = None) -> Path:
    """The KB folder: `path` (a --kb flag), else $MING_KB, else medical_kg in the data folder."""
    if path:
        src = Path(path).expanduser()
    elif os.environ.get("MING_KB"):
        src = Path(os.environ["MING_KB"]).expanduser()
    else:
        data = envs.data_dir()
        if data is None:
            raise MingError("no knowledge base: found no data folder (../shared/data) and MING_KB is unset; "
                            "set MING_KB=/path/to/medical_kg (a folder with entities.jsonl and triples.jsonl) "
                            "or pass --kb DIR")
        src = data / "medical_kg"
    missing = [f for f in SOURCE_FILES if not (src / f).is_file()]
    if missing:
        raise MingError(f"knowledge base folder {src} lacks {', '.join(missing)} (want the medical_kg schema: "
                        "entities.jsonl {name,type,attrs} and triples.jsonl {head,relation,tail}); "
                        "point MING_KB or --kb at such a folder")
    return src.resolve()


def index_path(source: Path) -> Path:
    tag = hashlib.sha1(str(source).encode()).hexdigest()[:10]
    return envs.ming_home() / "kb" / f"{source.name}-{tag}.pkl"


def source_stamp(source: Path) -> dict:
    stamp: dict = {"index_version": INDEX_VERSION, "table_sha256": read_table()[2]}
    for f in SOURCE_FILES:
        st = (source / f).stat()
        stamp[f] = [st.st_size, st.st_mtime_ns]
    return stamp


def read_licence(source: Path) -> str:
    readme = source / "README.md"
    if readme.is_file():
        m = re.search(r"\*\*Licence[^*]*\*\*\s*:?\s*(.+)", readme.read_text(encoding="utf-8", errors="replace"))
        if m:
            return m.group(1).strip()
    return UNKNOWN_LICENCE


def _ratio(text: str | None) -> float | None:
    m = re.match(r"\s*([\d.]+)\s*%", text or "")
    try:
        return float(m.group(1)) / 100 if m else None
    except ValueError:
        return None


def _aliases(name: str, desc: str) -> list[str]:
    out = []
    for a in _ALIAS.findall(desc[:400]):
        if a != name and a not in out:
            out.append(a)
    return out[:3]


def _read_jsonl(path: Path, problems: list[str], check: Callable[[dict], bool]):
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path.name}:{n}: not JSON ({exc.msg})")
                continue
            if not isinstance(row, dict) or not check(row):
                problems.append(f"{path.name}:{n}: missing keys")
                continue
            yield row


def build_data(source: Path) -> dict:
    """The index as plain data (what `build_index` pickles)."""
    problems: list[str] = []
    diseases: dict[str, dict] = {}

    def entry(name: str) -> dict:
        d = diseases.get(name)
        if d is None:
            d = diseases[name] = {k: [] for k in RELATIONS.values()}
            d.update(desc="", ratio=None, aliases=[])
        return d

    symptom_names: set[str] = set()
    for row in _read_jsonl(source / "entities.jsonl", problems, lambda r: "name" in r and "type" in r):
        if row["type"] == "Symptom":
            symptom_names.add(row["name"])
        elif row["type"] == "Disease":
            d = entry(row["name"])
            attrs = row.get("attrs") or {}
            for key, limit in TEXT_LIMITS.items():
                text = attrs.get(key) or ""
                if isinstance(text, str) and text:
                    d[key if key != "susceptible_people" else "people"] = text[:limit]
            d["ratio"] = _ratio(attrs.get("disease_ratio"))
            d["aliases"] = _aliases(row["name"], attrs.get("desc") or "")
    n_triples = 0
    for row in _read_jsonl(source / "triples.jsonl", problems, lambda r: {"head", "relation", "tail"} <= set(r)):
        key = RELATIONS.get(row["relation"])
        if key is None:
            continue
        lst = entry(row["head"])[key]
        tail = sys.intern(row["tail"])  # one object per name: the pickle stores it once, loading makes it once
        if tail not in lst:
            lst.append(tail)
        n_triples += 1
        if key == "symptoms":
            symptom_names.add(row["tail"])
    # checks most diseases also list come first (a blood count before a rare assay)
    check_freq: dict[str, int] = {}
    for d in diseases.values():
        for c in d["checks"]:
            check_freq[c] = check_freq.get(c, 0) + 1
    for name, d in diseases.items():
        d["checks"].sort(key=lambda c: -check_freq[c])
        d["groups"] = [g for g, (rx, depts) in GROUPS.items() if rx.search(name) or depts & set(d["departments"])]
        d["mostly"] = [g for g in people_groups(d.get("people", "")) if g not in d["groups"]]
        d["kinds"] = name_kinds(name, d["departments"])
    lex = Lexicon.build(sorted(symptom_names))
    by_concept: dict[str, list[str]] = {}
    for name, d in diseases.items():
        concepts: set[str] = set()
        for s in d["symptoms"]:
            concepts |= lex.concepts_in(s)
        d["concepts"] = sorted(sys.intern(c) for c in concepts)
        for c in concepts:
            by_concept.setdefault(c, []).append(name)
    return {
        "version": INDEX_VERSION,
        "stamp": source_stamp(source),
        "source": str(source),
        "licence": read_licence(source),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "counts": {"diseases": len(diseases), "symptom_names": len(symptom_names), "concepts": len(by_concept),
                   "triples_used": n_triples},
        "problems": problems[:50],
        "n_problems": len(problems),
        "diseases": diseases,
        "symptom_names": sorted(symptom_names),
        "by_concept": by_concept,
    }


def build_index(source: Path, out: Path | None = None) -> BuildReport:
    t0 = time.perf_counter()
    data = build_data(source)
    out = out or index_path(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, out)
    return BuildReport(source, out, time.perf_counter() - t0, data["counts"], data["problems"], data["n_problems"])


def stale_reason(data: dict, source: Path) -> str | None:
    """Why a loaded index no longer matches its source (None when it still does)."""
    now = source_stamp(source)
    for key, value in now.items():
        if data.get("stamp", {}).get(key) != value:
            return f"{key} changed"
    return None
