"""The agent runtime loop and the plugin protocols."""
