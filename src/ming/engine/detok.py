"""UTF-8-safe incremental detokenization with stop strings, shared by every backend.

Byte-level BPE splits a Chinese character over several tokens; decoding a prefix then ends in
U+FFFD. We diff the decoded text of all generated tokens against what was already emitted and hold
back an incomplete character, and any tail that could still become a stop string."""

from __future__ import annotations

from typing import Any, Sequence

REPLACEMENT = "\ufffd"


class StreamDecoder:
    def __init__(self, tokenizer: Any, stop_strings: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.ids: list[int] = []
        self.emitted = 0  # characters of the (stop-trimmed) text already returned
        self.stopped = False

    def _decode(self) -> str:
        # Decoding the whole answer each step is simple and right for every tokenizer (sentencepiece
        # drops a leading space when a slice is decoded alone); answers are short enough.
        return self.tokenizer.decode(self.ids, skip_special_tokens=False)

    def add(self, token_id: int) -> str:
        """Add one generated token; return the newly printable text ("" if held back)."""
        if self.stopped:
            return ""
        self.ids.append(int(token_id))
        return self._advance(final=False)

    def finish(self) -> str:
        """No more tokens: flush what was held back (minus a stop string)."""
        if self.stopped:
            return ""
        out = self._advance(final=True)
        self.stopped = True
        return out

    def _advance(self, final: bool) -> str:
        text = self._decode()
        cut = None
        for s in self.stop_strings:
            i = text.find(s, max(0, self.emitted - len(s)))
            if i != -1 and (cut is None or i < cut):
                cut = i
        if cut is not None:
            self.stopped = True
            new = text[self.emitted:cut] if cut > self.emitted else ""
            self.emitted = max(self.emitted, cut)
            return new
        end = len(text)
        if not final:
            if text.endswith(REPLACEMENT):
                end = len(text.rstrip(REPLACEMENT))
            # hold back a tail that is a prefix of a stop string
            for s in self.stop_strings:
                for k in range(min(len(s) - 1, end - self.emitted), 0, -1):
                    if text[end - k:end] == s[:k]:
                        end = min(end, end - k)
                        break
        elif text.endswith(REPLACEMENT):
            end = len(text.rstrip(REPLACEMENT))  # never emit half a character, even at the end
        if end <= self.emitted:
            return ""
        new = text[self.emitted:end]
        self.emitted = end
        return new
