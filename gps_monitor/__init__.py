"""gps-monitor core: settings, domain models, geometry, position quality, database, CLI.

The core imports nothing from ``ingest``, ``rules`` or ``web``; they import it.
"""

__version__ = "0.1.0"
