"""What a learning round learns: the :class:`~.interface.LearningTask` interface and the
built-in tasks, one module each.

A task owns everything model-specific (initial weights, local training, evaluation, and which
data each participant holds); the round loop (:mod:`agentfleet.learning.simulate`, the
learning-round workflow) only moves weights between these calls, like Flower's client/strategy
split.

- :mod:`.interface`: the protocol, the data and results it passes, and the helpers round loops
  use with any task (seeds, promotion, a participant's training step).
- :mod:`.digits`: scikit-learn's bundled 8x8 digits, non-IID across participants, multinomial
  logistic regression.
- :mod:`.forecast`: each forecaster's own price series from :mod:`agentfleet.bots.market`, a
  linear autoregressive model of the next return.
- :mod:`.builtin`: the built-in tasks by name.
"""
