"""明医 MING: a Chinese medical consultation LLM toolkit."""

__version__ = "0.1.0"

DISCLAIMER = "⚠️ 本工具由 AI 生成回答，仅供健康科普参考，不能替代执业医生的诊断和治疗；如遇紧急情况请立即拨打 120 或前往急诊。"
DISCLAIMER_EN = ("AI-generated answers for health information only; not a substitute for a licensed doctor. "
                 "In an emergency call 120 (China) or your local emergency number.")
