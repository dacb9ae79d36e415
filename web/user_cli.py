"""``gps-monitor user create ...`` (see :mod:`web.cli`)."""

from web.cli import add_user_arguments as add_arguments
from web.cli import run_user as run

__all__ = ["add_arguments", "run"]
