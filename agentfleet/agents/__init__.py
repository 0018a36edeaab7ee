"""Agent bots: LLM agents whose tool loop runs durably (``workflows/agent_run.py``), within one
daily budget that counts model tokens and purchases together."""
