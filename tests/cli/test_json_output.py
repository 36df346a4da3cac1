"""The JSON the commands print is exactly ``json.dumps(document, indent=2)``, however it is written."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moduletrace.cli import render
from moduletrace.cli.render import pretty_json

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=30
)


@settings(max_examples=300)
@given(documents)
def test_the_json_printed_is_json_dumps_indented_by_two_character_for_character(document: object) -> None:
    # NaN and infinities (json.dumps writes them), lone surrogates, non-ASCII, empty containers included.
    assert pretty_json(document) == json.dumps(document, indent=2)


def test_without_msgspec_the_json_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_msgspec(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("msgspec"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_msgspec)
    document = {"races": [{"margin_ms": 1.5, "module_id": "m\u00e9", "evidence": []}], "nan": math.nan}
    assert render.pretty_json(document) == json.dumps(document, indent=2)
