"""Moved: ``python -m gmbench_baselines.training.record`` (this name keeps working from a source
checkout, with a note)."""

import sys

from gmbench_baselines.training.record import main

if __name__ == "__main__":
    print("note: `python -m baselines.record` is now `python -m gmbench_baselines.training.record`",
          file=sys.stderr)
    sys.exit(main())
