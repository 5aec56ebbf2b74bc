"""Moved: ``python -m gmbench.features.train_classifier`` (this name keeps working, with a note)."""

import sys

from gmbench.features.train_classifier import main

if __name__ == "__main__":
    print("note: `python -m gmbench.extractors.train` is now `python -m gmbench.features.train_classifier`",
          file=sys.stderr)
    sys.exit(main())
