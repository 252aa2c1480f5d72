"""``python -m serving_common.pipeline``: the serial-pipeline front (see the package's description)."""

import sys

from .process import main

sys.exit(main())
