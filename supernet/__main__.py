"""``python -m supernet ...``: the ``supernet`` command without its console script."""

import sys

from supernet.commands.cli import main

sys.exit(main())
