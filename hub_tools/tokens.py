"""The Hugging Face token: where it comes from, and keeping its value out of everything printed.

A server may echo the ``Authorization`` header into an error message, and a token need not look
like ``hf_...`` (an enterprise or proxy token, an OAuth token), so messages are scrubbed of the
token's actual value, not of a pattern only. ``redacted_output`` applies this to everything a
command writes to stdout/stderr (messages, warnings, log records, progress bars), so no path that
prints can leak it.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from contextlib import contextmanager
from typing import Iterator, TextIO

MASK = "***"
#: values shorter than this are not treated as secrets (scrubbing "ab" would garble every line)
MIN_SECRET_LENGTH = 4
#: tokens of the usual form, whoever they belong to
_HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def resolve_token(token: str | None = None) -> str | None:
    """``token`` if given, else the one ``huggingface_hub`` would use (``HF_TOKEN`` or ``hf auth login``)."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def redact(text: str, token: str | None) -> str:
    """``text`` with the value of ``token`` and any ``hf_...`` token replaced by ``***``."""
    if token and len(token) >= MIN_SECRET_LENGTH:
        text = text.replace(token, MASK)
    return _HF_TOKEN_RE.sub("hf_" + MASK, text)


class _RedactingStream(io.TextIOBase):
    """A text stream that scrubs the token from every write before passing it on."""

    def __init__(self, stream: TextIO, token: str | None) -> None:
        self._stream = stream
        self.token = token

    def write(self, text: str) -> int:
        self._stream.write(redact(text, self.token))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


@contextmanager
def redacted_output(token: str | None) -> Iterator[None]:
    """Scrub ``token`` from everything written to ``sys.stdout``/``sys.stderr`` inside the block,
    including log handlers that captured those streams before it started."""
    originals = (sys.stdout, sys.stderr)
    wrapped = {id(s): _RedactingStream(s, token) for s in originals}
    swapped: list[tuple[logging.StreamHandler, TextIO]] = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            stream = getattr(handler, "stream", None)
            # handlers whose stream is a read-only property follow sys.stderr by themselves
            if isinstance(handler, logging.StreamHandler) and id(stream) in wrapped \
                    and not isinstance(getattr(type(handler), "stream", None), property):
                handler.setStream(wrapped[id(stream)])
                swapped.append((handler, stream))
    sys.stdout, sys.stderr = wrapped[id(originals[0])], wrapped[id(originals[1])]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = originals
        for handler, stream in swapped:
            handler.setStream(stream)
