"""``python -m smkit_report compare OLD.csv NEW.csv --labels LABELS.csv --out DIR``."""

import sys

from smkit_report.cli import main

sys.exit(main())
