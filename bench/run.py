"""Every benchmark in turn, for `make bench`; today that is the reconciler benchmark."""

from __future__ import annotations

import sys

from bench import reconciler

if __name__ == "__main__":
    sys.exit(reconciler.main())
