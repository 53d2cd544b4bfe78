"""The forecasting layer: models, the walk-forward backtest against naive, out-of-sample calibrated intervals and
the served forecaster. Imports the data layer and the foundation only (never registry or operations)."""
