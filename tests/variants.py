"""Print the supported variants' ids as JSON: `python tests/variants.py` (the CI matrix)."""

from __future__ import annotations

import json
import sys

from support.variants import SUPPORTED

if __name__ == "__main__":
    json.dump([variant.id for variant in SUPPORTED], sys.stdout)
