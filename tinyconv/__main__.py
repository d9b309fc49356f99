"""``python -m tinyconv ...`` runs the ``tinyconv`` command line (see :mod:`tinyconv.cli`)."""
import sys

from .cli import main

sys.exit(main())
