"""``python -m qt.export``: the command; its code is ``qt.experiment.export``."""

import sys

from qt.experiment.export import main

if __name__ == "__main__":
    sys.exit(main())
