"""`python -m halb ...` is `halb ...`."""

import sys

from halb.cli.main import main

sys.exit(main(["halb", *sys.argv[1:]]))
