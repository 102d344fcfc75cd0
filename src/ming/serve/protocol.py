"""OpenAI chat-completions request / response models, with limits declared as constraints.

Unknown request fields are allowed (logged by name and listed back to the client in `ming.ignored`),
so a newer client never crashes the server. ming's extensions are plain optional fields:
`mode` ("qa" 医疗问答 | "consult" 智能问诊), `truncate` (drop the oldest exchanges instead of a 400 when
the history is longer than the context window), `top_k`, `repetition_penalty`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_TOKENS_LIMIT = 1_000_000  # pydantic bound; the real bound is the model's context window (checked in serving)
MAX_N = 4  # choices per request (generated one after another)
MAX_MESSAGES = 1000


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    # roles are checked in serving (to answer unknown roles with a clear message, not a pydantic dump)
    role: str = Field(max_length=32)
    content: Union[str, list[TextPart], None] = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    stop: Union[str, list[str], None] = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=MAX_N)
    user: str | None = None
    # known OpenAI parameters this server does not implement: accepted, reported in `ming.unsupported`
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: Any = None
    parallel_tool_calls: bool | None = None
    # ming extensions
    mode: Literal["qa", "consult"] | None = None
    truncate: bool = False
    top_k: int | None = Field(default=None, ge=0, le=1000)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return [s for s in stops if s]

    def unsupported(self) -> list[str]:
        """Known OpenAI parameters set to something this server does not honour."""
        out = []
        if self.presence_penalty:
            out.append("presence_penalty")
        if self.frequency_penalty:
            out.append("frequency_penalty")
        if self.logit_bias:
            out.append("logit_bias")
        if self.logprobs:
            out.append("logprobs")
        if self.top_logprobs:
            out.append("top_logprobs")
        for name in ("tools", "tool_choice", "functions", "function_call", "response_format"):
            v = getattr(self, name)
            if v not in (None, [], "none", "auto") and not (name == "response_format" and _is_text_format(v)):
                out.append(name)
        return out


def _is_text_format(v: Any) -> bool:
    return isinstance(v, dict) and v.get("type") == "text"


# -- responses -------------------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict | None = None


class ResponseMessage(BaseModel):
    role: str = "assistant"
    content: str = ""


class Choice(BaseModel):
    model_config = ConfigDict(extra="allow")  # ming_<stage> fields: every stage's metadata
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None
    ming_safety: dict | None = None  # the safety decision for this answer (rules triggered, findings table …)


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")  # ming_<stage> fields: every stage's metadata
    id: str
    object: str = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    ming_safety: dict | None = None  # decision of the first choice (same for every choice: same messages)
    ming: dict = Field(default_factory=dict)  # disclaimer, mode, warnings, unsupported / ignored parameters


class DeltaMessage(BaseModel):
    role: str | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    model_config = ConfigDict(extra="allow")  # ming_<stage> fields: every stage's metadata
    index: int
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: None = None
    ming_kind: str | None = None  # "safety" when the text comes from the safety layer, not the model
    ming_safety: dict | None = None  # on the last chunk of each choice


class ChatCompletionChunk(BaseModel):
    model_config = ConfigDict(extra="allow")  # ming_<stage> fields: every stage's metadata
    id: str
    object: str = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    ming_safety: dict | None = None
    ming: dict | None = None


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "ming"
    ming: dict = Field(default_factory=dict)


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]
