"""``python -m qt.probe_init``: the command; its code is ``qt.tools.probe_init``."""

import sys

from qt.tools.probe_init import main

if __name__ == "__main__":
    sys.exit(main())
