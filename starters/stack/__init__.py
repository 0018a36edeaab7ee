"""The embedded stack behind ``fleet up``: Temporal, anvil, database, HTTP app, worker."""
