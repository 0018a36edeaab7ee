"""The embedded stack behind ``fleet up``: Temporal dev server, anvil, database, HTTP app, worker."""
