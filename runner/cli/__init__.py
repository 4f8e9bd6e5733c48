"""The command line: `airlock`, one module per command group."""
