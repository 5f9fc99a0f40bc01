"""`python -m aezoo` runs the command line."""

import sys

from aezoo.cli import main

sys.exit(main())
