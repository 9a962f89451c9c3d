"""`python -m simq` is the `simq` command."""

import sys

from simq.cli import main

sys.exit(main())
