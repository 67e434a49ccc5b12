"""``python -m aevb.cli``: the same as the ``aevb`` command."""

import sys

from .main import main

sys.exit(main())
