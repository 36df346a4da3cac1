"""The normalised metric sample: what ``sources/metrics.py`` reads and ``analysis/database.py`` uses.

The metrics counterpart of :class:`moduletrace.spans.Span`: the boundary between the reader of the
metrics archive and the analysis, so that nothing in ``analysis/`` knows OTLP JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Sample(NamedTuple):
    """One data point: a gauge's or a sum's value; a histogram gives ``<name>.count``, ``.sum`` and ``.max``."""

    name: str
    time_ns: int
    value: float
    labels: Mapping[str, Any]  # the point's attributes, with service.name / service.instance.id
