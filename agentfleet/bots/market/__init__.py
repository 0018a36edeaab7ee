"""Price series for forecasters: imported OHLCV bars, else a seeded synthetic feed (labelled so).

- :mod:`.feed`: the synthetic feed (a seeded random walk with regime changes) and the bar model.
- :mod:`.storage`: a symbol's series from the ``price_bars`` table, else the synthetic feed.
- :mod:`.csv_import`: ``fleet data import``: an OHLCV CSV into ``price_bars``, all or nothing.
- :mod:`.ema`: the EMA forecast and its backtest; :mod:`.regimes`: regime detection.

The analytics the built-in bots need live here, so the worker and the reference remote bot
compute the same way.
"""
