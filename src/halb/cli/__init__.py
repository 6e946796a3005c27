"""Command-line entry points: one module per command, arguments to calls, errors to exit codes."""
