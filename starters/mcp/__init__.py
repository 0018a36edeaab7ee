"""The fleet's MCP server: bots' skills as MCP tools for assistants, priced ones paid with x402
as its MCP transport says, through the fleet's HTTP gateway (docs/mcp.md)."""
