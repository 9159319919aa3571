"""F11: thin wrapper around `ptqtheory.figures.f11_w4a8` (the figure code lives in the package).

Usage: ``python figures/f11_w4a8.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f11_w4a8
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f11_w4a8))
