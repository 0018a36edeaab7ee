"""Chain layer: contract artifacts, dev accounts, deployment, network profiles and transactions."""
