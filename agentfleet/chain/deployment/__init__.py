"""agentfleet's contracts on a chain and the manifest that remembers them (``deployment.json``).

``fleet up`` calls :func:`clients.deployment.ensure_deployed` once its worker runs: a manifest for
this chain whose contracts all have code and were built from today's artifacts is reused without
sending anything; otherwise the four contracts are deployed again and every dev account receives
1,000,000 fUSD. On a real network (``fleet chain deploy --network amoy``) the deployer is
``FLEET_DEPLOYER_KEYSTORE`` (+ password) or ``FLEET_DEPLOYER_KEY``; its balance is checked against
the estimated cost before anything is sent, so a failed check deploys nothing. A manifest describing
a real network is never replaced by a deployment on another chain (give each network its own
``FLEET_HOME``).

Deploying is two halves: :func:`.plan.prepare` checks everything that can be refused (RPC, chain id,
deployer key, balance) without Temporal; :func:`clients.deployment.execute` sends every creation and
mint as a TransactionWorkflow from the deployer's relayer entity, the same durable path as every
other transaction (signed and recorded before broadcast, fees bumped when stuck, outcomes
reconciled). Request ids carry an attempt id kept in ``deployment.pending.json`` until the manifest
is written, so a deploy interrupted at any point and run again sends only what is missing.

Every failure is a one-line :class:`FleetError`. Private keys are never printed or logged, and RPC
URLs are shown without their path (hosted endpoints keep API keys there).

- :mod:`.manifest`: ``deployment.json``, what it records and how it compares with the chain.
- :mod:`.deployer`: whose key deploys (keystore, key, or anvil's account 0).
- :mod:`.plan`: everything that can be refused before a transaction is sent, and the plan.
"""
