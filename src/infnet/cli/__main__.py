"""``python -m infnet.cli``: the same as the ``infnet`` command."""

import sys

from .main import main

sys.exit(main())
