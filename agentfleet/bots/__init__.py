"""Bots: what a bot is (``model``), how it is checked (``health``), what the fleet tells it
(``commands``), how it is described to other agents (``a2a``) and what it trades on (``market``)."""
