"""Database access: migrations (``migrate``), the connection pool (``pool``) and one module per
table family (``registry`` for companies and vehicles, ``positions``, ...)."""
