"""Disclaimer texts shown at session start, in API metadata and on the web page."""

from __future__ import annotations

from ming import DISCLAIMER, DISCLAIMER_EN

SESSION_BANNER = DISCLAIMER + "\n（安全层：急症分诊 / 检验报告比对 / 拒答与剂量提示已开启，可用 --safety off|on|strict 切换）"


def disclaimer(lang: str = "zh") -> str:
    return DISCLAIMER_EN if lang == "en" else DISCLAIMER


def metadata(mode: str) -> dict:
    """What the API puts in every response's metadata."""
    return {"disclaimer": DISCLAIMER, "disclaimer_en": DISCLAIMER_EN, "safety_mode": mode}
