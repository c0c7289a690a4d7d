"""Entry point for `ray job submit --working-dir . -- python jobs/segment.py ...`.

Same flags as `raydist segment` (see `--help`): binarise another detector's score maps on the
cluster that submitted it (RAY_ADDRESS), or on an embedded local Ray when started by hand.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir, when not pip-installed

from raydist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["segment", *sys.argv[1:]], executor_default="ray"))
