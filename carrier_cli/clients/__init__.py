"""Platform clients (Discord, Instagram) that feed a runtime from outside the terminal."""
