"""payweave-hooks: the plugin contract.

Plugins depend on this distribution only. It holds the ``hookimpl`` marker, the hookspecs
(:mod:`payweave.hooks.hookspecs`, the plugin author's reference), the models that cross the
boundary, the capability model, money, the typed errors and the HTTP retry policy.
"""
import pluggy

from . import hookspecs
from .capabilities import CaptureMode, CartUpdateStage, Feature, PspCapabilities, RefundSupport, RenewalStyle, VoidSupport
from .errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    ConfigurationError,
    InvalidRequest,
    NotSupported,
    PaymentDeclined,
    PayweaveError,
    PluginError,
    RemoteNotFound,
    TemporarilyUnavailable,
    WebhookVerificationFailed,
)
from .money import Money, MoneyError, UnknownCurrency, currency_exponent, from_minor_units, to_minor_units
from .version import __version__

PROJECT = hookspecs.PROJECT
#: Mark your hook implementations with ``@hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "PROJECT",
    "AuthenticationFailed",
    "CaptureMode",
    "CartUpdateStage",
    "ConcurrencyConflict",
    "ConfigurationError",
    "Feature",
    "InvalidRequest",
    "Money",
    "MoneyError",
    "NotSupported",
    "PaymentDeclined",
    "PayweaveError",
    "PluginError",
    "PspCapabilities",
    "RefundSupport",
    "RemoteNotFound",
    "RenewalStyle",
    "TemporarilyUnavailable",
    "UnknownCurrency",
    "VoidSupport",
    "WebhookVerificationFailed",
    "__version__",
    "currency_exponent",
    "from_minor_units",
    "hookimpl",
    "hookspecs",
    "to_minor_units",
]
