"""``python -m tinyconv ...`` runs the ``tinyconv`` command line (see :mod:`tinyconv.cli`).

Python imports the package before this module, so a Ctrl-C during that import is Python's own; from here on it is
handled as for the ``tinyconv`` command (:mod:`tinyconv_launcher`).
"""
import sys

from tinyconv_launcher import main

sys.exit(main())
