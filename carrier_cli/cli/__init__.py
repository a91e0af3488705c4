"""Typer command modules: one per command group. They parse and print; logic lives below."""
