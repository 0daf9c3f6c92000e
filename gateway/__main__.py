"""``python -m gateway`` is the ``rondpoint`` command."""

import sys

from gateway.cli import main

sys.exit(main())
