"""The prompts the evaluator sends, versioned: a change here changes scores, so it bumps
PROMPT_VERSION and is recorded in every report."""

from __future__ import annotations

PROMPT_VERSION = "mcq-v1"

MCQ_ZH = ("以下是中国医学考试的{kind}，请选出正确答案。\n\n{question}\n{options}\n\n"
          "请先给出答案字母，格式为“答案：X”{multi}，然后可以简要说明理由。")
MCQ_EN = ("The following is a multiple-choice question from a medical licensing exam. Choose the correct answer.\n\n"
          "{question}\n{options}\n\nStart your reply with \"Answer: \" followed by the letter of the correct option, then "
          "optionally give a short reason.")
ANSWER_PREFIX = {"zh": "答案：", "en": "Answer:"}
LETTER_SEP = {"zh": "", "en": " "}  # "答案：B" / "Answer: B"


def format_options(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def mcq_user(item: dict, language: str = "zh") -> str:
    opts = format_options(item["options"])
    if language == "en":
        return MCQ_EN.format(question=item["question"].strip(), options=opts)
    multi = len(item["answer"]) > 1
    # The exam states the question type (CMExam marks its multi-answer items); we pass it on.
    return MCQ_ZH.format(kind="多项选择题（有两个或以上正确答案）" if multi else "单项选择题",
                         question=item["question"].strip(), options=opts,
                         multi="（多个答案请全部写出，如“答案：AC”）" if multi else "")


def mcq_answer(item: dict, language: str = "zh") -> str:
    """The assistant turn of a few-shot example."""
    return ANSWER_PREFIX[language] + LETTER_SEP[language] + item["answer"]


def mcq_messages(item: dict, shots: list[dict], language: str = "zh") -> list[dict]:
    msgs: list[dict] = []
    for s in shots:
        msgs.append({"role": "user", "content": mcq_user(s, language)})
        msgs.append({"role": "assistant", "content": mcq_answer(s, language)})
    msgs.append({"role": "user", "content": mcq_user(item, language)})
    return msgs


QA_SYSTEM_NOTE = "qa: ming.prompts.system_prompt('qa') as system message, the patient question as user message"
CONSULT_NOTE = "consult: ming.prompts.system_prompt('consult'); the last turn asks for '诊断：'"
