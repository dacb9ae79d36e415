"""The transport layer (see the modules)."""
