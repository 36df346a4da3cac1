"""An exception as span text: its message and a stack trace, bounded and redacted.

The host's exception is hostile input: its message can be megabytes, its ``__str__`` can raise,
its traceback can hold thousands of frames (deep recursion, or one stored exception re-raised
again and again: each ``raise`` prepends frames to the same traceback). The work done here per
failure is bounded whatever the exception: the message is cut before it is scanned for secrets,
the trace shows at most ``_HEAD + _TAIL`` frames per exception and ``_MAX_CHAIN`` chained
exceptions, and the traceback chain is walked at most ``_MAX_WALK`` links deep.

The trace reads like Python's own (``traceback.format_exception``), with the middle of a long
traceback elided; it is formatted once, and only its frame lines are redacted, since the message
lines reuse the messages already redacted.
"""

from __future__ import annotations

import builtins
import linecache
from types import TracebackType

from moduletrace.redaction import redact

#: Longest exception message kept (status description and ``exception.message``).
MAX_MESSAGE = 1024
#: Longest stack trace kept (``exception.stacktrace``).
MAX_STACKTRACE = 8192
_HEAD = 8  # outermost frames: the call that failed this time
_TAIL = 12  # innermost frames: where the exception was first raised
_MAX_WALK = 256
_MAX_CHAIN = 3
_MAX_SOURCE_LINE = 200
_MAX_NOTES = 3
_MAX_GROUP = 5
UNPRINTABLE = "<exception str() failed>"

_GROUP: type[BaseException] | None = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def error_type(exc: BaseException) -> str:
    """``error.type``: the class's qualified name, with its module unless it is a builtin."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def message(exc: BaseException) -> str | None:
    """``str(exc)``, cut to ``MAX_MESSAGE`` and redacted; ``None`` when ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - the host's exception, not ours: never let it escape
        return None
    return redact(text, MAX_MESSAGE)


def stacktrace(exc: BaseException, exc_message: str | None) -> str:
    """Python's traceback text for ``exc`` (``exc_message`` is its ``message()``), bounded."""
    chain: list[tuple[BaseException, str]] = [(exc, "")]
    seen = {id(exc)}
    current = exc
    while len(chain) < _MAX_CHAIN:
        cause = current.__cause__
        if cause is not None:
            link = _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            cause, link = current.__context__, _CONTEXT
        else:
            break
        if id(cause) in seen:
            break
        seen.add(id(cause))
        chain.append((cause, link))
        current = cause
    parts: list[str] = []
    if len(chain) == _MAX_CHAIN and (current.__cause__ is not None or current.__context__ is not None):
        parts.append("[earlier chained exceptions not shown]\n")
    for index in range(len(chain) - 1, -1, -1):  # oldest first, as Python prints them
        member = chain[index][0]
        parts.append(_one(member, exc_message if member is exc else message(member)))
        if index:
            parts.append(chain[index][1])
    trace = "".join(parts)
    if len(trace) > MAX_STACKTRACE:
        trace = "[stack trace cut]\n" + trace[-MAX_STACKTRACE:]
    return trace


def _one(exc: BaseException, exc_message: str | None) -> str:
    frames = redact(_frames(exc.__traceback__)) if exc.__traceback__ is not None else ""
    kind = error_type(exc)
    if exc_message is None:
        exc_message = UNPRINTABLE
    line = f"{kind}: {exc_message}\n" if exc_message else f"{kind}\n"
    return frames + line + _notes(exc) + _group(exc)


def _frames(tb: TracebackType) -> str:
    head: list[TracebackType] = []
    link: TracebackType | None = tb
    while link is not None and len(head) < _HEAD:
        head.append(link)
        link = link.tb_next
    rest: list[TracebackType] = []
    for _ in range(_MAX_WALK):
        if link is None:
            break
        rest.append(link)
        link = link.tb_next
    tail = rest[-_TAIL:]
    lines = ["Traceback (most recent call last):\n"]
    _append_frames(lines, head)
    omitted = len(rest) - len(tail)
    if link is not None:
        lines.append(f"  ... more than {omitted} frames not shown (the traceback is over {_MAX_WALK} deep) ...\n")
    elif omitted:
        lines.append(f"  ... {omitted} frames not shown ...\n")
    _append_frames(lines, tail)
    return "".join(lines)


def _append_frames(lines: list[str], links: list[TracebackType]) -> None:
    previous: tuple[str, int | None, str] | None = None
    repeated = 0
    for link in links:
        code = link.tb_frame.f_code
        where = (code.co_filename, link.tb_lineno, code.co_name)
        if where == previous:
            repeated += 1
            continue
        if repeated:
            lines.append(f"  [Previous line repeated {repeated} more times]\n")
            repeated = 0
        previous = where
        lines.append(f'  File "{where[0]}", line {where[1]}, in {where[2]}\n')
        source = linecache.getline(where[0], where[1]).strip() if where[1] is not None else ""
        if source:
            if len(source) > _MAX_SOURCE_LINE:
                source = redact(source, _MAX_SOURCE_LINE)
            lines.append(f"    {source}\n")
    if repeated:
        lines.append(f"  [Previous line repeated {repeated} more times]\n")


def _notes(exc: BaseException) -> str:
    try:
        notes = getattr(exc, "__notes__", None)
    except Exception:  # noqa: BLE001 - a property of the host's exception class
        return ""
    if not isinstance(notes, (list, tuple)) or not notes:
        return ""
    text = "".join(redact(note, MAX_MESSAGE) + "\n" for note in notes[:_MAX_NOTES] if isinstance(note, str))
    if len(notes) > _MAX_NOTES:
        text += f"[{len(notes) - _MAX_NOTES} more notes]\n"
    return text


def _group(exc: BaseException) -> str:
    if _GROUP is None or not isinstance(exc, _GROUP):
        return ""
    members: tuple[BaseException, ...] = exc.exceptions  # type: ignore[attr-defined]
    lines = []
    for member in members[:_MAX_GROUP]:
        text = message(member)
        lines.append(f"  +-- {error_type(member)}: {UNPRINTABLE if text is None else text}\n")
    if len(members) > _MAX_GROUP:
        lines.append(f"  +-- ... and {len(members) - _MAX_GROUP} more exceptions\n")
    return "".join(lines)
