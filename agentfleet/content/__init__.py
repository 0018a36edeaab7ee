"""Content and compliance: the pipeline's models (``model``), drafting from templates
(``drafting``), scoring (``scoring``), the policy and its checks (``policy``), the audit and
content tables (``store``) and the operations on them that the CLI and HTTP share (``ops``)."""
