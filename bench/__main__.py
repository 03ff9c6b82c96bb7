"""``python -m bench <command>``: the same commands as the ``ccemu`` console script.

``python -m bench allreduce ...`` is short for ``ccemu bench allreduce ...``.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m bench"))
