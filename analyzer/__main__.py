"""``python -m analyzer``: the perfsentinel command."""

import sys

from analyzer.commands.cli import main

sys.exit(main())
