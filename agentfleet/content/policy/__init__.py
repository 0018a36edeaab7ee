"""The content policy: what a post must and must not contain, who may approve it, when it expires.

A policy is a YAML file (the packaged ``agentfleet/content/policies/default.yaml``, or the file
named by ``FLEET_CONTENT_POLICY``) validated once at start into a frozen
:class:`~agentfleet.content.policy.rules.Policy`. Everything here is pure and deterministic (no
clock, no network), so it is safe in activities and cheap to test.

- :mod:`.rules`: the :class:`Policy` model (disclaimers, PII, links, channels, approval) and the
  approval decisions it makes.
- :mod:`.loading`: YAML to a :class:`Policy`, with one-line errors that name the field; the
  packaged default.
- :mod:`.checks`: :func:`run_checks` (what a text is judged by) and the amendments that add a
  disclosure or the disclaimers a text calls for.
"""
