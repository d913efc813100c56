"""The ``icm`` command line."""
