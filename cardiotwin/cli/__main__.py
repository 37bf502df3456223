"""``python -m cardiotwin.cli``: the ``cardiotwin`` command line."""

import sys

from cardiotwin.cli import app

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
