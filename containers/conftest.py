"""Makes every container's package (containers/<name>/<name>_container) importable for the unit tests that
live in the container's own folder (containers/<name>/tests/, collected through pytest's testpaths)."""

import sys
from pathlib import Path

for _folder in sorted(Path(__file__).resolve().parent.iterdir()):
    if (_folder / f"{_folder.name}_container").is_dir() and str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
