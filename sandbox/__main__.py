"""`python -m sandbox`: see sandbox.run."""

import os
import sys

from sandbox.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
