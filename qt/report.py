"""``python -m qt.report``: the command; its code is ``qt.analysis.report``."""

import sys

from qt.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
