"""Compare the last N raydist runs of an MLflow experiment (same as `raydist compare`).

python mlflow/compare.py --experiment raydist --tracking-uri http://127.0.0.1:5000 --last 5 --chart trend.png
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raydist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
