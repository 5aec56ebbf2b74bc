"""Ray underneath gmbench (``pip install "gmbench[ray]"``): a session started on this machine
or joined on a cluster, with nothing sent off the machine unasked, and one evaluation's
sampling and feature extraction split across workers (:mod:`gmbench.distributed.shards`).
Sweeps over models, datasets and seeds, built on these, are :mod:`gmbench.run.sweeps`."""

from gmbench.distributed.ray_runtime import INSTALL_HINT, RayError, ray_available, ray_session
from gmbench.distributed.shards import gather_samples, shard_blocks

__all__ = ["INSTALL_HINT", "RayError", "gather_samples", "ray_available", "ray_session",
           "shard_blocks"]
