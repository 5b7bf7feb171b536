"""structlog setup: JSON lines when stdout is not a TTY, coloured console otherwise.

Context (company, document, transaction, plugin, request id) is bound with
``structlog.contextvars.bound_contextvars`` and appears on every line. A redaction processor
masks ``SecretStr`` values and every secret registered with :func:`register_secret`, so a secret
cannot reach a log line even if passed by mistake.
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog
from pydantic import SecretStr

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "**********"


def register_secret(value: str | SecretStr | None) -> None:
    """Mask ``value`` wherever it appears in a log event from now on."""
    if value is None:
        return
    raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if len(raw) >= 4:
        with _lock:
            _secrets.add(raw)


def redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    return value


def _redact_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: redact(v) for k, v in event_dict.items()}


def _stringify_unknown(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # Objects may render secrets in their repr: render them, then redact.
    for key, value in list(event_dict.items()):
        if not isinstance(value, str | int | float | bool | type(None) | dict | list | tuple | SecretStr):
            event_dict[key] = redact(repr(value))
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (test capture, redirects)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return getattr(sys.stderr, "isatty", lambda: False)()


def configure(log_format: str = "auto", level: str = "INFO", *, stream: Any = None) -> None:
    stream = stream or _CurrentStderr()
    use_json = log_format == "json" or (log_format == "auto" and not getattr(stream, "isatty", lambda: False)())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(
        colors=True, exception_formatter=structlog.dev.plain_traceback
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # tracebacks become text first, so they are redacted too
            _stringify_unknown,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping().get(level.upper(), 20)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def enabled_for(level: int) -> bool:
    """Whether a line at ``level`` (``logging.DEBUG``, ...) is written under the current
    configuration: a hot path can skip building a line the filtering logger would drop."""
    check = getattr(structlog.get_config()["wrapper_class"], "is_enabled_for", None)
    return True if check is None else bool(check(None, level))


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("payweave").bind(**context)
