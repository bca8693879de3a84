"""`python -m gateway`: see gateway.cli."""

import os
import sys


def _main() -> int:
    try:
        from gateway.cli import main  # inside the try: Ctrl-C while the packages load is a quiet exit too

        return main(sys.argv[1:], os.environ)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(_main())
