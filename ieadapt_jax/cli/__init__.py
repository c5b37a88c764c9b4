"""The command-line front door: one module per command."""
