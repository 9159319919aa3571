"""F12: thin wrapper around `ptqtheory.figures.f12_magr` (the figure code lives in the package).

Usage: ``python figures/f12_magr.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f12_magr
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f12_magr))
