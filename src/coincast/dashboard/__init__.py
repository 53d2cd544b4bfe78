"""The Voila dashboard (``notebooks/dashboard.ipynb``, ``make dashboard``): what a person looks at every hour.

It only *reads*: each coin's published snapshot ``products/<coin>/published/`` (``coincast.operations.publish``: the last
whole, successful build, every number and chart from it, labelled with that build's own source), the latest
build's status beside it (a warning when it failed) and, for the champion's promotion time, the MLflow registry
when there is one. It never trains, fetches or scores: live accuracy is the monitor stage's ``live.json``.

Data flows one way through the modules:

* :mod:`~coincast.dashboard.data`: find the project and its coins, read a coin's products and MLflow (I/O only);
* :mod:`~coincast.dashboard.summary`: the numbers shown (headline, freshness, backtest table, live accuracy);
* :mod:`~coincast.dashboard.render`: HTML from the Jinja2 ``templates/`` and ``templates/style.css``;
* :mod:`~coincast.dashboard.charts`: the plotly figures;
* :mod:`~coincast.dashboard.app`: the ipywidgets page (coin selector, refresh, one coin's panel);
* :mod:`~coincast.dashboard.serve`: the Voila launcher (``python -m coincast.dashboard``).
"""
