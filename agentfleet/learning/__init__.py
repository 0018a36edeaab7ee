"""Cross-bot learning: the deterministic numeric core that learning-round activities call.

``store`` keeps weights by content hash (workflows carry only ``sha256:`` refs), ``tasks`` says
what is learned from which bot's data, ``strategies`` screens and aggregates updates, and
``simulate`` runs whole rounds in one process (the workflow's sequence, without Temporal).
"""
