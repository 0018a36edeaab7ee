"""agentfleet's HTTP app: codec endpoint for the Web UI today; x402 gateway and agent cards later."""
