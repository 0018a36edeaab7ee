"""agentfleet's HTTP app: the Web UI's codec endpoint today; x402 gateway and agent cards later."""
