"""Starting and steering workflows: what starters and activities call instead of the client."""
