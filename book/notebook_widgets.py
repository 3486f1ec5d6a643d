"""Widgets for the chapters that also read well where no kernel runs them.

A widget needs a live kernel. Where there is none (a saved notebook opened fresh, an untrusted
notebook, the web edition, GitHub), Jupyter shows its plain-text form instead, by default a raw
``VBox(children=(IntSlider(...``. ``Interactive`` replaces that text with a sentence saying what the
widget is and how to use it; every chapter follows a widget cell with a static figure.
"""
from __future__ import annotations

import ipywidgets as widgets


class Interactive(widgets.VBox):
    """A VBox whose plain-text form says what it is, for readers without a kernel."""

    def __init__(self, children, note: str = "interactive figure"):
        super().__init__(children)
        self.note = note

    def __repr__(self) -> str:
        return (f"[{self.note}: an interactive widget.\n Run the notebook in JupyterLab to use it\n"
                " (if it stays blank: File > Trust Notebook, then run the cell again).]")

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = repr(self)  # ipywidgets would cut it at 110 characters
        return data


def interactive_figure(draw, note: str, **controls) -> Interactive:
    """Controls in a wrapping row above the output of ``draw(**values)``, redrawn when a control moves.

    Sliders should be built with ``continuous_update=False``: a drag then redraws once, on release.
    """
    row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return Interactive([row, widgets.interactive_output(draw, controls)], note=note)


def log_int_slider(value: int, values: list[int], description: str = "N") -> widgets.SelectionSlider:
    """A slider over integers that span decades (e.g. 1, 2, 4, ..., 256): equal steps on a log scale."""
    if value not in values:
        raise ValueError(f"value {value} is not one of values {values}")
    return widgets.SelectionSlider(options=values, value=value, description=description, continuous_update=False,
                                   layout=widgets.Layout(width="360px"))
