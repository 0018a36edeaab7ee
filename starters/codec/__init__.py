"""The codec endpoint for the Temporal Web UI and CLI: its own app, on loopback, behind a token."""
