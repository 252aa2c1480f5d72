import sys

from smkit_contract.cli import main

sys.exit(main())
