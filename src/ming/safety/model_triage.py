"""The loaded model asked a constrained yes/no: "does this message describe an emergency happening now?"

    judge = ModelTriage(engine)                         # any ming Engine that scores log-likelihoods
    judge = ModelTriage(engine, lock=engine.lock)       # a server: scoring waits for the engine
    v = judge.score("我爸突然说不出话，一边手抬不起来", context=["刚才还好好的"])
    v.p_yes, v.seconds                                  # p(是) of softmax over {是, 否}; wall time

The prompt is a fixed triage-nurse instruction (system) and the message as the user turn, rendered by the
engine's own template layer (`engine.render`), then the two one-character answers 是 / 否 are scored as
continuations of the assistant turn (`engine.score_continuations`): one prefill, no decoding. The system
text and the user-turn wrapper are fixed, so engines with a prefix cache re-encode only the message. A llama.cpp
engine scores on a sequence of its own (sequence 0 beside a batch, or sequence 1 of a chat engine loaded with
`scoring_sequence`), so the conversation's cached tokens stay; other engines share one cache with the reply.

Prompt variants are data (`PROMPTS`); `prompt_hash` names the exact text so cached scores (bench/) follow it.
Quality is measured in bench/safety.py --model (docs/triage.md); a tiny test model only exercises the mechanics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ming.errors import MingError
from ming.models import DEFAULT_MODEL, embedded_key

MAX_MESSAGE_CHARS = 2000  # the judge reads at most this much of each message (the newest one's tail is kept)

_SYSTEM_V1 = (
    "你是急诊预检分诊护士。判断用户的消息是否描述了一个此刻正在发生、需要立即拨打120或马上去急诊的紧急情况"
    "（病人是发消息的人或其身边的家人、同伴都算）。\n"
    "回答“是”：危及生命或器官、肢体的急症正在发生或刚刚发生，例如呼吸心跳停止、叫不醒、严重呼吸困难、"
    "持续胸痛伴出汗、卒中表现、抽搐、大出血、严重过敏、中毒或误服、严重外伤、孕产妇出血或剧烈腹痛、"
    "婴幼儿高热或精神差、正在或即将自杀自伤。\n"
    "回答“否”：健康科普或知识提问（如“心梗有哪些症状”）；过去已经发生、现在已好转的事；否定的症状"
    "（如“没有胸痛”）；假设、担心或预防（如“如果……怎么办”）；新闻、影视、小说或别人已在住院治疗的情况；"
    "夸张的说法（如“热得想死”）；轻微、慢性、可以门诊或在家处理的不适。\n"
    "只回答一个字：是 或 否。"
)

_SYSTEM_V2 = (
    "你是医院急诊预检分诊台的护士，按急诊预检分诊标准（一级濒危、二级危重）判断来信。\n"
    "问题：发消息的人或其身边的人，此刻是否正处于需要马上拨打120或立即去急诊的危急状况？\n"
    "以下情况一律回答“否”：只是询问医学知识或科普；说的是过去的事且现在已经好了；明确说没有某症状；"
    "假设或预防性的提问；新闻、影视、小说里的情节，或已经在医院治疗的人；口头夸张；轻症或慢性不适，"
    "可以预约门诊。\n"
    "拿不准但可能危及生命时回答“是”。只回答一个字：是 或 否。"
)

_SYSTEM_V3 = (
    "你是医院急诊预检分诊台的护士，按急诊预检分诊标准（一级濒危、二级危重）判断来信。\n"
    "问题：发消息的人或其身边的人，此刻是否正处于需要马上拨打120或立即去急诊的危急状况？\n"
    "以下情况一律回答“否”：只是询问医学知识或科普；说的是过去的事且现在已经好了；明确说没有某症状；"
    "假设或预防性的提问；新闻、视频、小说里的情节，或已经被救护车接走、已经在医院的人；"
    "口头夸张和玩笑（如“累死了”“看到账单要晕倒了”“笑得肚子疼”）；轻症或慢性不适，可以预约门诊。\n"
    "以下情况回答“是”：隐晦的轻生信号（交代后事、告别、攒药、说再也不用醒来）；精神异常的人有危险举动"
    "（拿刀、开煤气、站在阳台边）；扬言伤人并有准备；婴幼儿精神差、吐绿水、不尿、呼吸费力；"
    "孕产妇出血、剧烈腹痛、胎动减少；误服药物或毒物。\n"
    "拿不准但可能危及生命时回答“是”。只回答一个字：是 或 否。"
)

# name -> (system instruction, user-turn wrapper with {message})
PROMPTS: dict[str, tuple[str, str]] = {
    "v1": (_SYSTEM_V1, "{message}"),
    "v2": (_SYSTEM_V2, "来信：{message}\n是否需要立即急救？"),
    "v3": (_SYSTEM_V3, "来信：{message}\n是否需要立即急救？"),
}
# name -> worked examples shown as earlier turns (message, answer); written for ming, not taken from any set
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "v3": (
        ("我奶奶刚才吃饭时突然说话含糊，右手拿不住筷子", "是"),
        ("今天开会开到窒息，老板的话听得我血压飙升哈哈", "否"),
        ("我哥这两天把自己的东西都送人了，还说以后爸妈就拜托我了", "是"),
        ("中风有什么早期表现？家里老人需要注意什么", "否"),
        ("邻居家老人前天心梗，已经做完手术转到普通病房了", "否"),
        ("孩子八个月，从昨晚到现在一直吐，精神很差，尿布是干的", "是"),
    ),
}
DEFAULT_PROMPT = "v2"  # chosen over v1 on a 100-message sample of triage_set.jsonl (docs/triage.md)
# p(是) at or above which the safety stage escalates: the median leave-out threshold of rules OR model (docs/triage.md)
DEFAULT_THRESHOLD = 0.8
# embedded models whose yes/no was measured well enough to be on by default in `ming chat` (docs/triage.md:
# the 1.5B, rules OR model on the two independent held-out sets: recall 0.771 -> 0.921 at FPR 0.045 -> 0.053;
# the 0.5B's AUC is 0.64, so it is not used)
ON_BY_DEFAULT = ("1.5b",)
CONTEXT_TURNS = 3  # earlier user messages shown with the newest one
ANSWERS = {"yes": "是", "no": "否"}


@dataclass(frozen=True)
class Verdict:
    """The model's answer to one message: p_yes = softmax over the two answers' log-probabilities."""

    p_yes: float
    logp_yes: float
    logp_no: float
    seconds: float
    prompt_tokens: int
    threshold: float | None = None  # the judge's threshold when it made the call (ModelTriage.assess)
    step: str = "yesno"  # which model step: "yesno" (this module) or "probe" (ming.safety.probe_triage)

    def emergency(self, threshold: float) -> bool:
        return self.p_yes >= threshold

    @property
    def fired(self) -> bool:
        return self.threshold is not None and self.p_yes >= self.threshold

    def to_dict(self) -> dict:
        return {"step": self.step, "p_yes": round(self.p_yes, 4), "threshold": self.threshold, "fired": self.fired,
                "seconds": round(self.seconds, 4), "prompt_tokens": self.prompt_tokens}


def prompt_hash(name: str = DEFAULT_PROMPT) -> str:
    """A short hash of a prompt variant's exact text (cache keys)."""
    system, wrapper = _prompt(name)
    shots = f"\x00{EXAMPLES[name]}" if EXAMPLES.get(name) else ""
    return hashlib.sha256(f"{system}\x00{wrapper}\x00{ANSWERS}{shots}".encode("utf-8")).hexdigest()[:10]


def _prompt(name: str) -> tuple[str, str]:
    if name not in PROMPTS:
        raise MingError(f"unknown triage prompt {name!r}; the prompts are {', '.join(PROMPTS)}")
    return PROMPTS[name]


def read_step_file(path, fmt: str, what: str, bench: str) -> dict:
    """A model step's packaged numbers (tables/*.json): the JSON object of format `fmt`, or a MingError that names
    the file and how to remake it (`what`: "triage probe" …; `bench`: the script whose --save writes it)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MingError(f"no {what} at {path}; reinstall ming (`pip install -e .`) or train one with "
                        f"`python {bench} --save PATH`") from None
    except (OSError, ValueError) as exc:
        raise MingError(f"cannot read the {what} {path} ({exc}); retrain it with `python {bench} --save PATH`") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise MingError(f"{path} is not a ming {what} (format {fmt!r} expected, got "
                        f"{d.get('format') if isinstance(d, dict) else type(d).__name__!r})")
    return d


def write_step_file(path, d: dict, compact: bool = False):
    """Write a model step's numbers atomically (a .tmp beside it, then renamed)."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(d, ensure_ascii=False, **({"separators": (",", ":")} if compact else {"indent": 1}))
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def clip(text: str, limit: int) -> str:
    """The newest `limit` characters of a text (its tail), marked as cut when it is."""
    return text if len(text) <= limit else "……" + text[-limit:]


class ModelTriage:
    """Ask a loaded engine the emergency question about one message (plus earlier user messages)."""

    step = "yesno"

    def __init__(self, engine: Any, prompt: str = DEFAULT_PROMPT, threshold: float = DEFAULT_THRESHOLD,
                 lock: Any = None):
        if not 0.0 <= threshold <= 1.0:
            raise MingError(f"the model triage threshold is a probability in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        if not callable(getattr(engine, "score_continuations", None)) or not callable(getattr(engine, "render", None)):
            raise MingError(f"model triage needs a ming Engine (render + score_continuations); got "
                            f"{type(engine).__name__}")
        feats = getattr(engine, "features", None)
        if feats is not None and feats and "loglik" not in feats:
            raise MingError(f"model triage scores the answers 是/否, and the {engine.backend} backend cannot score "
                            "log-likelihoods; load the model with --backend llamacpp or hf")
        self.engine = engine
        self.lock = lock if lock is not None else contextlib.nullcontext()  # held while scoring (ming serve)
        self.prompt = prompt
        self.system, self.wrapper = _prompt(prompt)
        self.hash = prompt_hash(prompt)
        self.answer_ids = {k: self._answer_ids(v) for k, v in ANSWERS.items()}

    def _answer_ids(self, text: str) -> list[int]:
        ids = self.engine.template.encode_text(text)
        if not ids:
            raise MingError(f"the tokenizer of {self.engine.name} encodes the answer {text!r} as no tokens")
        return ids

    def messages(self, text: str, context: Sequence[str] = ()) -> list[dict]:
        """The conversation the judge is shown: the instruction, then the message (earlier ones first)."""
        if not isinstance(text, str) or any(not isinstance(c, str) for c in context):
            raise MingError("model triage takes a message string and a list of earlier message strings, got "
                            f"{type(text).__name__} / {[type(c).__name__ for c in context]}")
        if not text.strip():
            raise MingError("model triage got an empty message; there is nothing to judge")
        earlier = [c.strip() for c in context if c.strip()]
        body = "\n".join(earlier + [text.strip()]) if earlier else text.strip()
        shots = []
        for example, answer in EXAMPLES.get(self.prompt, ()):
            shots += [{"role": "user", "content": self.wrapper.format(message=example)},
                      {"role": "assistant", "content": answer}]
        return [{"role": "system", "content": self.system}, *shots,
                {"role": "user", "content": self.wrapper.format(message=clip(body, MAX_MESSAGE_CHARS))}]

    def render(self, text: str, context: Sequence[str] = ()) -> list[int]:
        return self.engine.render(self.messages(text, context), add_generation_prompt=True).ids

    def score(self, text: str, context: Sequence[str] = ()) -> Verdict:
        t0 = time.perf_counter()  # the seconds include waiting for the engine (`lock`)
        ids = self.render(text, context)
        with self.lock:
            lp = self.engine.score_continuations(ids, self.answer_ids)
        dt = time.perf_counter() - t0
        y, n = float(lp["yes"]), float(lp["no"])
        if not (math.isfinite(y) or math.isfinite(n)):
            raise MingError(f"the model gave both answers a log-probability of {y} / {n}; it cannot judge")
        m = max(y, n)
        p = math.exp(y - m) / (math.exp(y - m) + math.exp(n - m))
        return Verdict(p, y, n, dt, len(ids))

    def assess(self, user_turns: Sequence[str]) -> Verdict:
        """The verdict on a conversation's newest user message (with up to CONTEXT_TURNS earlier ones), at
        this judge's threshold (`Verdict.fired`)."""
        turns = list(user_turns)
        if not turns:
            raise MingError("model triage got a conversation without a user message")
        v = self.score(turns[-1], turns[-1 - CONTEXT_TURNS:-1])
        return dataclasses.replace(v, threshold=self.threshold)


def measured_engine(engine: Any) -> bool:
    """Whether a loaded engine is one the step was measured on: an embedded model of ON_BY_DEFAULT on llama.cpp,
    without an adapter (chat and serve then ask it about English messages: ming.safety.stage `english_model`)."""
    from ming.models.resolve import embedded_key

    return (getattr(engine, "backend", None) == "llamacpp" and not getattr(engine, "lora_path", None)
            and embedded_key(str(getattr(engine, "name", "") or "")) in ON_BY_DEFAULT)


def on_by_default(model_path: str | None, model_base: str | None = None, backend: str = "auto") -> bool:
    """Whether `ming chat` runs the model step without --triage-model / --no-triage-model: for an embedded model
    it was measured on (ON_BY_DEFAULT) on llama.cpp (where it scores on its own KV sequence), not an adapter."""
    if model_base is not None or backend not in ("auto", "llamacpp"):
        return False
    return embedded_key(model_path or DEFAULT_MODEL) in ON_BY_DEFAULT
