"""``python -m lutnet`` runs the console script."""
import sys

from lutnet.cli import main

sys.exit(main())
