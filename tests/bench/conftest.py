"""Make the repository's bench/ package importable: it is not part of the installed `pipeline` package, and
without this `bench` would resolve to this tests/bench folder."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
