"""Changes to gradio's error handling: every failed request answers with a message."""

from __future__ import annotations

from typing import Any

import gradio as gr


def answer_every_error_with_a_message(demo: gr.Blocks) -> None:
    """Make every failure of a request reach the caller as a ``gr.Error`` with a message.

    The app's own errors are ``gr.Error``s already; what is left is raised by gradio around them --
    a file argument naming a path that was not uploaded (``InvalidPathError``), or a failure no
    handler foresaw -- and would reach an API caller as ``{"error": null}``. Wrapped on the
    instance, like ``checked_input``.
    """
    from gradio.exceptions import InvalidPathError

    process_api = demo.process_api

    async def answered(*args: Any, **kwargs: Any) -> Any:
        try:
            return await process_api(*args, **kwargs)
        except gr.Error:
            raise
        except InvalidPathError as exc:
            raise gr.Error(f"file argument refused: {exc} Send files as uploads (gradio_client: handle_file).",
                           title="Invalid input", print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 -- whatever it is, the caller gets its name and message
            raise gr.Error(f"the request failed: {type(exc).__name__}: {exc}", title="Error") from exc

    demo.process_api = answered  # type: ignore[method-assign]
