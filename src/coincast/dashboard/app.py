"""The ipywidgets page ``notebooks/dashboard.ipynb`` shows: a coin selector, a refresh button and one coin's panel.

The notebook is three lines::

    from coincast.dashboard import app
    app.prepare()     # imports; a pre-heated Voila kernel waits here for the page request
    app.dashboard()   # the project: $COINCAST_PROJECT, else the folder above notebooks/

Products are read when the page is requested and again on Refresh (:mod:`~coincast.dashboard.data`); a
section that cannot be shown becomes a one-line note, never a traceback.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from coincast.dashboard import charts, render
from coincast.dashboard.data import find_project, list_coins, load_coin, mlflow_champion, read_profile, read_settings
from coincast.dashboard.summary import champion_name, freshness, headline, live_accuracy, staleness_limit
from coincast.forecasting import figures
from coincast.metrics import mae_by_hour

logger = logging.getLogger(__name__)

MLFLOW_ENV = "COINCAST_DASHBOARD_MLFLOW"  # background (default) | sync | off


def prepare() -> None:
    """Import what the dashboard needs and, in a pre-heated Voila kernel (``voila --preheat_kernel=True``),
    wait here for the page request: the kernel starts and imports before anyone asks, while the products
    are still read when the page is requested (so they are never older than the request)."""
    import ipywidgets  # noqa: F401
    import plotly.graph_objects as go
    import plotly.io as pio
    import pyarrow.parquet  # noqa: F401

    pio.to_json(go.Figure(go.Scatter(x=[0], y=[0])), validate=False)  # loads plotly's validators
    render.title_html()  # compiles a template and reads the stylesheet
    if os.environ.get("VOILA_PREHEAT", "False") == "True":
        from voila.utils import wait_for_request

        wait_for_request()


# --- widgets ----------------------------------------------------------------------------------------------
# Every widget is a model (plus Layout and Style models) the browser creates before anything shows, so the
# page uses few of them: static HTML is merged, layouts and styles are shared.
_shared: dict[str, Any] = {}


def _full_width() -> Any:
    import ipywidgets as w

    if "layout" not in _shared:
        _shared["layout"] = w.Layout(width="100%")
        from ipywidgets.widgets.widget_string import HTMLStyle

        _shared["style"] = HTMLStyle()
    return _shared["layout"]


def _html_style() -> Any:
    _full_width()
    return _shared["style"]


def _html_widget(value: str, cls: str | None = None) -> Any:
    import ipywidgets as w

    widget = w.HTML(value=value, layout=_full_width(), style=_html_style())
    if cls:
        widget.add_class(cls)
    return widget


def figure_output(fig: Any, cls: str | None = None) -> Any:
    """A plotly figure in an Output widget as a plotly mime bundle, rendered by the jupyterlab-plotly
    extension: plotly.js is loaded once per page. (A FigureWidget ships plotly.js through anywidget per
    widget: first render took 8.5 s instead of 3.3 s for one chart here.)"""
    import ipywidgets as w

    out = w.Output(layout=_full_width())
    if cls:
        out.add_class(cls)
    # set the outputs directly rather than `with out: display(...)`: capturing sets the widget's msg_id,
    # which makes the executing client (Voila's nbclient) send comm messages back to the kernel mid-cell;
    # under Voila 0.5.13 that intermittently left the page spinning on "Executing 2 of 2"
    out.outputs = ({"output_type": "display_data", "data": figures.figure_bundle(fig), "metadata": {}},)
    return out


def profile_widgets(path: Path | None) -> list[Any]:
    """A toggle that embeds the ydata-profiling report (an iframe) only when asked: ~1 MB, not on first render."""
    import ipywidgets as w

    if path is None:
        return []
    button = w.ToggleButton(value=False, description="Show the data profile", tooltip=str(Path(path).name),
                            layout=w.Layout(width="220px", align_self="flex-start"))
    button.add_class("cc-profile-button")
    frame = _html_widget("", "cc-profile")

    def toggle(change: Mapping[str, Any]) -> None:
        if change["new"]:
            try:
                doc = read_profile(path)
            except OSError as exc:
                frame.value = render.note_html(f"profile.html could not be read ({type(exc).__name__})")
                return
            frame.value = render.profile_frame_html(doc)
            button.description = "Hide the data profile"
        else:
            frame.value = ""
            button.description = "Show the data profile"

    button.observe(toggle, names="value")
    return [button, frame]


def _safe(title: str, build: Callable[[], str]) -> str:
    """A section's HTML; an exception becomes a one-line note instead of a traceback."""
    try:
        return build()
    except Exception as exc:
        logger.debug("dashboard section %s failed", title, exc_info=True)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return render.note_html(f"Could not show {title}: {type(exc).__name__}: {first}")


def _safe_figure(title: str, build: Callable[[], Any], cls: str) -> list[Any]:
    """``[Output with the figure]``, or ``[HTML note]`` when building it fails."""
    try:
        return [figure_output(build(), cls)]
    except Exception as exc:
        logger.debug("dashboard figure %s failed", title, exc_info=True)
        return [_html_widget(render.note_html(f"Could not show {title}: {type(exc).__name__}"))]


# --- one coin -------------------------------------------------------------------------------------------------
def _panel(parts: list[Any]) -> Any:
    import ipywidgets as w

    box = w.VBox(parts, layout=_full_width())
    box.add_class("cc-coin-panel")
    return box


def _registry_filler(widget: Any, cp: Any, project_root: str | os.PathLike | None, mode: str) -> None:
    """Fill the registry section from MLflow: in a thread (``background``), now (``sync``) or not (``off``)."""
    if mode == "off":
        return

    def fill() -> None:
        info = mlflow_champion(project_root, cp.coin)
        try:
            widget.value = render.registry_html(cp.registry, info, cp.registry_written)
        except Exception:  # the widget may be gone (refresh); nothing to show
            logger.debug("registry update failed", exc_info=True)

    if mode == "sync":
        fill()
    else:
        threading.Thread(target=fill, name=f"coincast-mlflow-{cp.coin}", daemon=True).start()


def coin_panel(products_dir: str | os.PathLike, coin: str, project_root: str | os.PathLike | None = None,
               settings: Mapping[str, Any] | None = None, now: pd.Timestamp | None = None,
               mlflow: str = "background") -> Any:
    """Everything about one coin, as an ipywidgets VBox. ``mlflow``: ``"background"`` (read the registry in a
    thread and update the section when done), ``"sync"`` or ``"off"``."""
    cp = load_coin(products_dir, coin)
    h = render.heading_html
    if cp.folder is None:  # nothing published: no numbers, only why
        return _panel([_html_widget(_safe("the build status", lambda: render.build_status_html(cp.status))
                                    + h("Validation gate") + _safe("the validation gate", lambda: render.gate_html(cp)),
                                    "cc-head")])
    try:
        head = headline(cp.raw, cp.forecast)
    except Exception as exc:  # e.g. a forecast file with unexpected content: show the rest
        logger.debug("headline failed", exc_info=True)
        cp.problems.append(f"the forecast numbers could not be read ({type(exc).__name__})")
        head = headline(None, None)
    try:
        champ = champion_name(cp.registry, cp.forecast)
    except Exception:
        champ = None
    has_chart = cp.raw is not None or cp.forecast is not None

    def banners() -> str:
        fresh = freshness(cp.extract, cp.raw, staleness_limit(cp.validation, settings), now)
        return render.top_html(cp, head, fresh)

    parts: list[Any] = [_html_widget(
        _safe("the banners", banners) + _safe("the forecast", lambda: render.headline_html(head))
        + h("Live accuracy: every logged prediction, scored out of sample")
        + _safe("live accuracy", lambda: render.live_accuracy_html(live_accuracy(cp.live)))
        + (h("Recent history and the next 24 hours") if has_chart else ""), "cc-head")]
    if has_chart:
        parts += _safe_figure("the forecast chart", lambda: figures.forecast_figure(cp.raw, cp.forecast, coin),
                              "cc-forecast-chart")
    parts.append(_html_widget(h("Backtest: champion vs naive vs the other models")
                              + _safe("the backtest", lambda: render.backtest_html(cp.backtest, champ)), "cc-backtest"))
    try:
        by_hour = mae_by_hour(cp.backtest_forecasts, 1)
    except Exception:
        logger.debug("error by hour failed", exc_info=True)
        by_hour = pd.DataFrame()
    if not by_hour.empty:
        parts += _safe_figure("the error by hour", lambda: charts.error_by_hour_figure(by_hour, champ, 1),
                              "cc-hour-chart")
    parts.append(_html_widget(h("Validation gate") + _safe("the validation gate", lambda: render.gate_html(cp))
                              + h("Model registry"), "cc-status"))
    registry = _html_widget(_safe("the registry", lambda: render.registry_html(cp.registry, None, cp.registry_written)),
                            "cc-registry-box")
    parts.append(registry)
    parts.append(_html_widget(h("Data profile")
                              + _safe("the profile", lambda: render.profile_html(cp.profile_path, cp.profile_bytes))))
    parts += profile_widgets(cp.profile_path)
    _registry_filler(registry, cp, project_root, mlflow)
    return _panel(parts)


# --- the page -------------------------------------------------------------------------------------------------
def dashboard(products_dir: str | os.PathLike | None = None, project_root: str | os.PathLike | None = None,
              now: pd.Timestamp | None = None, mlflow: str | None = None) -> Any:
    """The dashboard: title, coin selector, refresh button and the selected coin's panel.

    ``project_root`` defaults to :func:`~coincast.dashboard.data.find_project`; ``products_dir`` to
    ``<project_root>/products``. With no products at all it shows one sentence telling the user to run
    ``make demo``."""
    import ipywidgets as w

    mlflow = mlflow or os.environ.get(MLFLOW_ENV, "").strip().lower() or "background"
    root = Path(project_root) if project_root is not None else find_project()
    products = Path(products_dir) if products_dir is not None else root / "products"
    settings = read_settings(root)

    selector = w.Dropdown(description="Coin", options=[], layout=w.Layout(width="240px"))
    selector.add_class("cc-coin")
    refresh = w.Button(description="⟳ Refresh", tooltip="re-read the products", layout=w.Layout(width="auto"))
    refresh.add_class("cc-refresh")
    stamp = w.HTML("", layout=w.Layout(width="auto", margin="0 0 0 12px"), style=_html_style())
    stamp.add_class("cc-stamp")
    body = w.VBox([], layout=_full_width())
    body.add_class("cc-body")
    state = {"reads": 0}

    def show(*_: Any) -> None:
        if state.get("quiet"):
            return
        state["reads"] += 1
        coin = selector.value
        if not coin:
            body.children = [_html_widget(render.empty_html())]
        else:
            try:
                body.children = [coin_panel(products, coin, root, settings, now, mlflow)]
            except Exception as exc:  # never a traceback on the page
                logger.debug("coin panel failed", exc_info=True)
                body.children = [_html_widget(render.note_html(f"Could not show {coin}: {type(exc).__name__}"))]
        stamp.value = render.stamp_html(state["reads"], coin)  # last: the new panel is in place

    def reload(*_: Any) -> None:
        coins = list_coins(products, settings.get("coins"))
        current = selector.value
        state["quiet"] = True  # setting options/value fires the observer: show once, below
        try:
            selector.options = coins
            selector.value = current if current in coins else (coins[0] if coins else None)
        finally:
            state["quiet"] = False
        selector.layout.visibility = "visible" if coins else "hidden"
        show()

    selector.observe(show, names="value")
    refresh.on_click(reload)
    title = w.HTML(render.title_html(), layout=w.Layout(width="auto", margin="0 24px 0 0"), style=stamp.style)
    header = w.HBox([title, selector, refresh, stamp],
                    layout=w.Layout(align_items="center", width="100%", justify_content="flex-start"))
    page = w.VBox([header, body], layout=w.Layout(width="100%", max_width="1280px"))
    page.add_class("cc-app")
    reload()
    return page


__all__ = ["MLFLOW_ENV", "coin_panel", "dashboard", "figure_output", "prepare", "profile_widgets"]
