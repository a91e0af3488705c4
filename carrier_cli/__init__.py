"""Carrier: an ElizaOS-style agent runtime driven from the `carrier` command line."""

__version__ = "0.1.0"
