"""Regenerate the golden test vectors (``tests/data/golden``): the code lives with the tests that check it
(``tests/helpers/golden.py``); see its docstring for when to run this.

    .venv/bin/python scripts/make_golden.py [--out tests/data/golden]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import golden  # noqa: E402

if __name__ == "__main__":
    golden.main()
