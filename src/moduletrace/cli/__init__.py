"""The ``moduletrace`` command: argument parsing and rendering only."""
