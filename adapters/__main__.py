"""``python -m adapters``: the ``optout-hub`` command."""

import sys

from adapters.cli import main

sys.exit(main())
