"""Errors raised by the anomaly checks, each with a message a user can act on."""

from __future__ import annotations


class AnomalyError(Exception):
    """Base class for every error of the anomaly checks."""


class AnomalySettingsError(AnomalyError, ValueError):
    """The `anomalies` settings name an unknown detector or threshold, or give a value of the wrong kind."""
