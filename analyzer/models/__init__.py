"""Baseline models behind one interface (see ``base``): pick one by its config name."""

from __future__ import annotations

from analyzer.models.base import (
    Band,
    BaselineModel,
    FitContext,
    FitError,
    FittedBaseline,
    Seasonality,
    choose_seasonality,
)
from analyzer.models.profile import ProfileModel
from analyzer.models.stl import STLModel

__all__ = [
    "Band",
    "BaselineModel",
    "FitContext",
    "FitError",
    "FittedBaseline",
    "Seasonality",
    "choose_seasonality",
    "get_model",
    "resolve_model_name",
]


def resolve_model_name(name: str) -> str:
    """``auto`` is STL where no per-target choice was made (analyzer.models.auto makes it in the service):
    seasonal with a trend, and 40 ms per 28-day series."""
    return "stl" if name == "auto" else name


def get_model(name: str, options: object = None) -> BaselineModel:
    """``options``: model-specific settings (a ``ProphetOptions`` for prophet); ignored by the others."""
    resolved = resolve_model_name(name)
    if resolved == "prophet":
        from analyzer.models.prophet import ProphetModel  # imported on use: Prophet loads cmdstan

        return ProphetModel(options)  # type: ignore[arg-type]
    if resolved == "stl":
        return STLModel()
    if resolved == "mstl":
        return STLModel(multi=True)
    if resolved == "profile":
        return ProfileModel()
    raise ValueError(f"unknown or unavailable model {name!r}")
