"""Scale out: sweeps over models, datasets and seeds (``gmbench sweep``), and one evaluation's
sampling and feature extraction sharded across workers, on Ray when it is installed
(``pip install "gmbench[ray]"``), serially in this process otherwise."""

from gmbench.distributed.sweep import Job, Outcome, SweepError, SweepReport, parse_seeds, sweep

__all__ = ["Job", "Outcome", "SweepError", "SweepReport", "parse_seeds", "sweep"]
