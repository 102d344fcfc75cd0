"""System prompts ming uses by default, per mode. A checkpoint's own training-time system prompt
lives with its template (templates.py) and is selected with `--system @template`."""

from __future__ import annotations

from ming.errors import MingError

QA = (
    "你是明医（MING），一个专业、严谨、友善的中文医疗助手。请用通俗易懂的中文回答用户的医疗健康问题，"
    "分析病例、体检和检查报告时以给出的数据为依据，不编造事实；必要时说明何时应该就医。"
    "你的回答仅供参考，不能替代医生面诊。"
)

CONSULT = (
    "你是明医（MING），一名经验丰富的中文问诊医生。用户会描述自己的不适。信息不足时，每次只问一个最关键的问题"
    "（如起病时间、部位、性质、伴随症状、既往史、用药史、过敏史），不要一次问很多；"
    "信息足够后，给出初步判断（可能的诊断）、处理建议，以及需要立即就医的情况。你的回答不能替代医生面诊。"
)

MODES = {"qa": QA, "consult": CONSULT}

# `--system` sentinels
USE_TEMPLATE_DEFAULT = "@template"


def system_prompt(mode: str = "qa", override: str | None = None, template_default: str | None = None) -> str | None:
    """Resolve the system prompt: an explicit override wins ("" means none; "@template" means the
    checkpoint's own training-time prompt), else the medical prompt of the mode."""
    if override is not None:
        if override == USE_TEMPLATE_DEFAULT:
            return template_default
        return override or None
    if mode not in MODES:
        raise MingError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return MODES[mode]
