"""The names users' saved queries depend on: span names, stages and attribute keys.

Fixed by the product contract (shared/design.md); the instrumentation writes them and the
analysis reads them, so both import them from here.
"""

from __future__ import annotations

from typing import Final, Literal

Stage = Literal["create_start", "db_commit", "cache_update", "load_request", "load_db_query"]

#: stage -> span name, in lifecycle order.
SPAN_NAMES: Final[dict[str, str]] = {
    "create_start": "module_create_start",
    "db_commit": "module_create_db_commit",
    "cache_update": "module_create_cache_update",
    "load_request": "module_load_request",
    "load_db_query": "module_load_db_query",
}
STAGES: Final[dict[str, str]] = {name: stage for stage, name in SPAN_NAMES.items()}
LIFECYCLE_SPAN_NAMES: Final[frozenset[str]] = frozenset(SPAN_NAMES.values())

MODULE_ID: Final = "module.id"
MODULE_STAGE: Final = "module.stage"
#: True on a span whose task was cancelled (asyncio.CancelledError) before the stage finished.
MODULE_CANCELLED: Final = "module.cancelled"
#: On span links: "creation" (the link points at the module's creation) or "request"
#: (the link points at the span that was current when the load began).
MODULE_LINK_TYPE: Final = "module.link.type"

#: Module ids longer than this are truncated (a span attribute is not a blob store).
MAX_MODULE_ID_LENGTH: Final = 256
