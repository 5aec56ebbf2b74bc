"""How the bundled baselines are trained and recorded (not needed to evaluate them):

* ``python -m gmbench_baselines.training.train --family flow --dataset fashion-mnist``: fit one
  family and write its weights and training record (:mod:`.train`);
* ``python -m gmbench_baselines.training.record --dataset digits``: evaluate every baseline of a
  dataset with ``gmbench evaluate`` and write its board (:mod:`.record`);
* :mod:`.fitting`: the small pieces of a seeded training loop the families' ``fit`` share.
"""
