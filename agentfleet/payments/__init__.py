"""Payments between bots: x402 terms and verification (``x402``), per-payer holds on amounts in
flight (``holds``), the ledger of settlements (``ledger``), buyers' purchases and budgets
(``purchases``, ``spending``), the facilitator's keys (``facilitator_keys``), payer proofs
(``payer_proof``) and the reconciliation of the ledger with the chain (``reconcile``)."""
