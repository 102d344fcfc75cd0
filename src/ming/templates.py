"""Conversation templates: the one place where a conversation becomes token ids.

Chat, the server, the evaluator and the trainer all call `Template.render`, which returns the token
ids *and*, per token, whether it belongs to an assistant reply (the training loss mask). The mask is
built while rendering, segment by segment, never by searching the rendered string. So training and
inference cannot render a conversation differently.

Templates are data (`TemplateSpec`): `qwen` (ChatML, as MING-1.8B was trained), `bloom` (MING-7B:
`{system} USER: … ASSISTANT: …</s>`), and `hf` (the tokenizer's own chat template, rendered by
transformers; its assistant spans are found by rendering growing prefixes of the conversation).

Message text is always encoded as plain text: a user who types `<|im_end|>` or `</s>` gets those
characters, never the control token. Control tokens come only from the template's own text (for
`hf`, the parts of the rendering outside the messages, found by rendering with placeholders).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ming.errors import TemplateError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}
ROLES = ("system", "user", "assistant")
Piece = tuple[str, bool]  # (text, is_message_text): message text never yields a control token


@dataclass(frozen=True)
class TemplateSpec:
    """How each part of a conversation is written. `{content}` is replaced by the message text.

    A conversation renders as: system, then for each turn user_fmt, assistant_prefix,
    assistant_fmt (supervised), assistant_suffix (not supervised). With add_generation_prompt the
    rendering ends with assistant_prefix. `*_after_system` variants apply to the first user turn
    that follows a system segment (bloom joins them with a space)."""

    name: str
    system_fmt: str
    user_fmt: str
    assistant_prefix: str
    assistant_fmt: str  # supervised: the reply and the end-of-turn marker the model must learn to emit
    assistant_suffix: str = ""  # unsupervised glue after a reply
    user_fmt_after_system: str | None = None
    default_system: str | None = None  # the prompt the checkpoint was trained with (`--system @template`)
    stop_strings: tuple[str, ...] = ()
    description: str = ""


QWEN = TemplateSpec(
    name="qwen",
    system_fmt="<|im_start|>system\n{content}<|im_end|>\n",
    user_fmt="<|im_start|>user\n{content}<|im_end|>\n",
    assistant_prefix="<|im_start|>assistant\n",
    assistant_fmt="{content}<|im_end|>",
    assistant_suffix="\n",
    default_system="You are a helpful assistant.",
    stop_strings=("<|im_end|>", "<|endoftext|>", "<|im_start|>"),
    description="ChatML, exactly as MING-1.8B (Qwen1.5-1.8B-Chat) was trained; also Qwen2/2.5 models",
)

BLOOM = TemplateSpec(
    name="bloom",
    system_fmt="{content}",
    user_fmt="USER: {content}",
    user_fmt_after_system=" USER: {content}",
    assistant_prefix=" ASSISTANT:",
    assistant_fmt=" {content}</s>",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    ),
    stop_strings=("</s>", "USER:"),
    description="MING-7B (bloomz-7b1-mt): '{system} USER: … ASSISTANT: …</s>'",
)

SPECS: dict[str, TemplateSpec] = {"qwen": QWEN, "bloom": BLOOM}
NAMES = ("qwen", "bloom", "hf")


@dataclass
class Rendered:
    ids: list[int]
    mask: list[bool]  # True where the token belongs to an assistant reply (supervised)
    text: str
    message_spans: list[tuple[int, int]] = field(default_factory=list)  # token span of each message

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_supervised(self) -> int:
        return sum(self.mask)


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate roles and order: optional system first, then user/assistant alternating, user first."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TemplateError(f"message {i} must be an object with 'role' and 'content', got {m!r:.80}")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise TemplateError(f"message {i} has unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise TemplateError(f"message {i} content must be a string, got {type(content).__name__}")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:  # e.g. bytes that were not UTF-8, read with surrogateescape
            raise TemplateError(f"message {i} is not valid text: character {exc.start} is the lone surrogate "
                                f"\\u{ord(content[exc.start]):04x} (input that was not UTF-8?)") from None
        if role == "system" and i != 0:
            raise TemplateError(f"message {i}: a system message may only come first")
        out.append({"role": role, "content": content})
    turns = [m for m in out if m["role"] != "system"]
    for j, m in enumerate(turns):
        want = "user" if j % 2 == 0 else "assistant"
        if m["role"] != want:
            raise TemplateError(
                f"messages must alternate user/assistant starting with user; turn {j} is {m['role']!r}, expected {want!r}"
            )
    return out


class Template:
    """A template bound to a tokenizer."""

    def __init__(self, name: str, tokenizer: Any):
        if name not in NAMES:
            raise TemplateError(f"unknown conversation template {name!r}; choose one of {', '.join(NAMES)}")
        self.name = name
        self.tokenizer = tokenizer
        self.spec = SPECS.get(name)
        if name == "hf" and not getattr(tokenizer, "chat_template", None):
            raise TemplateError("--conv-template hf needs a tokenizer with a chat_template; this one has none. "
                                "Use --conv-template qwen or bloom.")
        added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
        self._added_ids: dict[str, int] = dict(added)
        self._added_re = (re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
                          if added else None)

    # -- public -----------------------------------------------------------------------------
    @property
    def default_system(self) -> str | None:
        return self.spec.default_system if self.spec else None

    @property
    def stop_strings(self) -> tuple[str, ...]:
        if self.spec:
            return self.spec.stop_strings
        eos = getattr(self.tokenizer, "eos_token", None)
        return (eos,) if eos else ()

    def stop_token_ids(self) -> set[int]:
        ids = set()
        vocab = self.tokenizer.get_vocab() if hasattr(self.tokenizer, "get_vocab") else {}
        for s in self.stop_strings:
            if s in vocab:
                ids.add(vocab[s])
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is not None:
            ids.add(eos)
        return ids

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> Rendered:
        messages = check_messages(messages)
        if add_generation_prompt and messages and messages[-1]["role"] == "assistant":
            raise TemplateError("add_generation_prompt needs the conversation to end with a user message")
        if self.spec is None:
            return self._render_hf(messages, add_generation_prompt)
        return self._render_spec(messages, add_generation_prompt)

    def render_text(self, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
        return self.render(messages, add_generation_prompt).text

    def encode_text(self, text: str) -> list[int]:
        """Token ids of `text` as plain text (never a control token), e.g. an answer prefix that follows a prompt."""
        return self._encode([(text, True)])[0]

    # -- data-driven templates ----------------------------------------------------------------
    def _segments(self, messages, add_generation_prompt):
        """Yield (pieces, supervised, message_index)."""
        s = self.spec
        after_system = False
        for i, m in enumerate(messages):
            role, content = m["role"], m["content"]
            if role == "system":
                yield _fill(s.system_fmt, content), False, i
                after_system = True
            elif role == "user":
                fmt = s.user_fmt_after_system if (after_system and s.user_fmt_after_system) else s.user_fmt
                yield _fill(fmt, content), False, i
                if i < len(messages) - 1:
                    yield [(s.assistant_prefix, False)], False, i + 1
                elif add_generation_prompt:
                    yield [(s.assistant_prefix, False)], False, i
                after_system = False
            else:
                yield _fill(s.assistant_fmt, content), True, i
                if s.assistant_suffix:
                    yield [(s.assistant_suffix, False)], False, i

    def _render_spec(self, messages, add_generation_prompt) -> Rendered:
        ids: list[int] = []
        mask: list[bool] = []
        text_parts: list[str] = []
        spans: dict[int, list[int]] = {}
        for pieces, supervised, mi in self._segments(messages, add_generation_prompt):
            seg_ids, _ = self._encode(pieces)
            start = len(ids)
            ids.extend(seg_ids)
            mask.extend([supervised] * len(seg_ids))
            text_parts.extend(text for text, _ in pieces)
            sp = spans.setdefault(mi, [start, start])
            sp[1] = len(ids)
        message_spans = [tuple(spans.get(i, (0, 0))) for i in range(len(messages))]
        return Rendered(ids, mask, "".join(text_parts), message_spans)

    def _encode(self, pieces: Sequence[Piece], offsets: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids (and character offsets) of the concatenated pieces. Control tokens are taken only from
        template pieces; everything between them, message text included, is encoded with the tokenizer's
        special tokens switched off. With ordinary messages this equals tokenizing the whole string."""
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        buf: list[str] = []
        start = pos = 0  # character position of buf in the whole text; of the piece being read

        def flush() -> None:
            text = "".join(buf)
            buf.clear()
            if not text:
                return
            enc = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True,
                                 return_offsets_mapping=offsets)
            ids.extend(enc["input_ids"])
            if offsets:
                spans.extend((start + a, start + b) for a, b in enc["offset_mapping"])

        for text, is_message in pieces:
            cut = 0
            if not is_message and self._added_re is not None:
                for m in self._added_re.finditer(text):
                    buf.append(text[cut:m.start()])
                    flush()
                    ids.append(self._added_ids[m.group()])
                    spans.append((pos + m.start(), pos + m.end()))
                    start, cut = pos + m.end(), m.end()
            buf.append(text[cut:])
            pos += len(text)
        flush()
        return ids, spans

    # -- the tokenizer's own chat template -------------------------------------------------------
    def _apply(self, messages, add_generation_prompt) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _render_hf(self, messages, add_generation_prompt) -> Rendered:
        # Character spans of each assistant reply come from rendering growing prefixes: the text
        # added between "prefix + generation prompt" and "prefix + reply" is the reply span.
        text = self._apply(messages, add_generation_prompt)
        char_spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self._apply(messages[:i], True)
            after = self._apply(messages[: i + 1], False)
            if not (text.startswith(before) and text.startswith(after) and after.startswith(before)):
                raise TemplateError(
                    "the tokenizer's chat template is not prefix-stable (it rewrites earlier turns, e.g. strips "
                    "reasoning), so assistant-only loss masks cannot be built from it. Use --conv-template qwen "
                    "or bloom, or a tokenizer whose template renders history unchanged."
                )
            char_spans.append((len(before), len(after)))
        ids, offsets = self._encode(self._hf_pieces(messages, add_generation_prompt, text), offsets=True)
        mask = [any(s <= a and b <= e and b > a for s, e in char_spans) for a, b in offsets]
        if char_spans and not any(mask):
            raise TemplateError("no assistant tokens found in the rendered conversation (empty replies?)")
        return Rendered(ids, mask, text, [])

    def _hf_pieces(self, messages, add_generation_prompt, text: str) -> list[Piece]:
        """`text` split into template text and message text, found by rendering the conversation again
        with a placeholder in place of each message."""
        marks = [f"\ue000{i}\ue001" for i in range(len(messages))]
        skeleton = self._apply([{**m, "content": k} for m, k in zip(messages, marks)], add_generation_prompt)
        pieces: list[Piece] = []
        pos = 0
        for m, k in zip(messages, marks):
            at = skeleton.find(k, pos)
            if at < 0 or skeleton.count(k) != 1:
                break
            pieces += [(skeleton[pos:at], False), (m["content"], True)]
            pos = at + len(k)
        else:
            pieces.append((skeleton[pos:], False))
            if "".join(p for p, _ in pieces) == text:
                return pieces
        # the template rewrites message text (trims it, drops parts): it cannot be told apart from the template
        for i, m in enumerate(messages):
            found = self._added_re.search(m["content"]) if self._added_re is not None else None
            if found:
                raise TemplateError(
                    f"message {i} contains the control token {found.group()!r}, and the tokenizer's chat template "
                    "changes message text, so ming cannot keep it plain text. Remove it from the message or use "
                    "--conv-template qwen or bloom.")
        return [(text, False)]


def _fill(fmt: str, content: str) -> list[Piece]:
    head, _, tail = fmt.partition("{content}")
    return [(head, False), (content, True), (tail, False)]


def detect(tokenizer: Any, model_type: str | None = None) -> str:
    """Pick a template for a model: bloom for Bloom models, qwen for ChatML vocabularies, else the
    tokenizer's own chat template. Never an unrelated default."""
    if model_type and "bloom" in model_type.lower():
        return "bloom"
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return "qwen"
    if getattr(tokenizer, "chat_template", None):
        return "hf"
    raise TemplateError(
        f"cannot tell which conversation template this model (type {model_type or 'unknown'}) was trained with: "
        "its tokenizer has no ChatML tokens and no chat_template. Pass --conv-template qwen, bloom or hf."
    )
