"""``python -m moduletrace``: the same as the ``moduletrace`` command."""

import sys

from moduletrace.cli.main import main

sys.exit(main())
