"""The Hugging Face token: where it comes from, and keeping its value out of everything printed.

A server may echo the ``Authorization`` header into an error message, and a token need not look
like ``hf_...`` (an enterprise or proxy token, an OAuth token), so output is scrubbed of the
token's actual value -- and of nothing else: a pattern such as ``hf_[A-Za-z0-9]+`` would also
rewrite repo and folder names (``hf_datasets_v2``) and the URLs printed with them.
``redacted_output`` applies this to everything a command writes to stdout/stderr (messages,
warnings, log records, progress bars), so no path that prints can leak it, even when the token
reaches the stream in pieces over several writes.
"""

from __future__ import annotations

import io
import logging
import sys
from contextlib import contextmanager
from typing import Iterator, TextIO

MASK = "***"
#: values shorter than this are not treated as secrets (scrubbing "ab" would garble every line)
MIN_SECRET_LENGTH = 4


def resolve_token(token: str | None = None) -> str | None:
    """``token`` if given, else the one ``huggingface_hub`` would use (``HF_TOKEN`` or ``hf auth login``)."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def _is_secret(token: str | None) -> bool:
    return bool(token) and len(token) >= MIN_SECRET_LENGTH  # type: ignore[arg-type]


def redact(text: str, token: str | None) -> str:
    """``text`` with every occurrence of the value of ``token`` replaced by ``***``."""
    return text.replace(token, MASK) if _is_secret(token) else text  # type: ignore[arg-type]


def _unfinished_prefix(text: str, token: str) -> int:
    """Length of the longest end of ``text`` that is the start of ``token`` (what the next write may finish)."""
    for length in range(min(len(text), len(token) - 1), 0, -1):
        if token.startswith(text[-length:]):
            return length
    return 0


class _RedactingStream(io.TextIOBase):
    """A text stream that scrubs the token from what passes through it.

    Text is passed on as soon as it cannot hold the token; only an end that could be the start of
    the token is held back until the next write (or ``close_pending``) shows what follows, so a
    token written in pieces is scrubbed as a whole.
    """

    def __init__(self, stream: TextIO, token: str | None) -> None:
        self._stream = stream
        self.token = token if _is_secret(token) else None
        self._pending = ""

    def write(self, text: str) -> int:
        if self.token is None:
            self._stream.write(text)
            return len(text)
        buffered = redact(self._pending + text, self.token)
        keep = _unfinished_prefix(buffered, self.token)
        self._pending = buffered[len(buffered) - keep:]
        self._stream.write(buffered[: len(buffered) - keep])
        return len(text)

    def close_pending(self) -> None:
        """Write out what was held back: the stream ends here, so it was not the token."""
        self._stream.write(self._pending)
        self._pending = ""
        self._stream.flush()

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
        for stream in wrapped.values():
            stream.close_pending()
        for handler, stream in swapped:
            handler.setStream(stream)
