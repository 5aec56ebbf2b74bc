"""Moved: ``python -m gmbench_baselines.training.train`` (this name keeps working from a source
checkout, with a note)."""

import sys

from gmbench_baselines.training.train import main

if __name__ == "__main__":
    print("note: `python -m baselines.train` is now `python -m gmbench_baselines.training.train`",
          file=sys.stderr)
    sys.exit(main())
