"""gmbench's errors, as users catch them (defined in :mod:`gmbench.core.errors`)."""

from gmbench.core.errors import *  # noqa: F403
from gmbench.core.errors import __all__  # noqa: F401
