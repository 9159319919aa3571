"""F13: thin wrapper around `ptqtheory.figures.f13_boa` (the figure code lives in the package).

Usage: ``python figures/f13_boa.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f13_boa
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f13_boa))
