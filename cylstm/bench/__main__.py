"""``python -m cylstm.bench``: the same program as ``python -m cylstm bench``."""

import sys

from .cli import main

sys.exit(main())
