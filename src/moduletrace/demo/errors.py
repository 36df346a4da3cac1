"""The demo services' own errors (a module of their own, so their error.type reads well)."""


class ModuleNotFound(LookupError):
    """The module is not in the index the canvas reads."""
