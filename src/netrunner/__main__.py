"""``python -m netrunner``: the command line (see ``netrunner run --help``)."""

from ._cli import main

raise SystemExit(main())
