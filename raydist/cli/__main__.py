"""``python -m raydist.cli``."""

import sys

from raydist.cli import main

sys.exit(main())
