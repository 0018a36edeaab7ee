"""Each bot kind's behaviour: how it answers the standard skills (forecast, tune, status,
performance, share_pattern, receive_intelligence). One module per kind:

- :mod:`.forecaster`: the built-in EMA forecaster, on its symbol's series.
- :mod:`.publisher`: the built-in publisher (posts through a channel; forecasts nothing).
- :mod:`.remote`: a bot running elsewhere, called over A2A.

A kind that cannot answer raises :class:`.common.SkillFailed` with the one line the operator
sees. ``activities/skills.py`` picks the kind, bounds each call in time, batches and heartbeats.
"""
