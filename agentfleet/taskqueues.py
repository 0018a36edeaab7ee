"""Task queue names: work is split by kind so each kind can scale on its own worker processes."""

from __future__ import annotations

WORKFLOWS = "fleet-workflows"
"""Deterministic orchestration (every workflow type)."""
CHAIN = "fleet-chain"
"""Activities that sign or read chain state."""
LLM = "fleet-llm"
"""Activities that call a language model or run heavy numeric work."""
IO = "fleet-io"
"""Database, channels and other I/O activities."""

AGENTS = "fleet-agents"
"""Agent runs and their model calls: the worker here carries the OpenAI Agents SDK integration."""

ALL = (WORKFLOWS, CHAIN, LLM, IO, AGENTS)
