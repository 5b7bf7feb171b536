"""The payment-method form: parse the submitted fields into a :class:`PaymentMethodSetup` and
check it with the engine's own rules (:func:`payweave.core.engine.setup.validate_setup` against
the PSP account's declared capabilities, exactly what ``PaymentEngine.save_payment_method``
runs), turning each refusal into errors attached to the settings it names.

The same check answers the as-you-type validation call and guards the save; there is no
second copy of the rules here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from payweave.core.engine import PaymentEngine
from payweave.core.engine.setup import (
    OPTION_FIELDS,
    SETTING_TITLES,
    CaptureTiming,
    PaymentMethodSetup,
    RefundTiming,
    validate_setup,
)
from payweave.hooks.capabilities import Feature, PspCapabilities
from payweave.hooks.errors import PayweaveError
from payweave.hooks.models import PluginKind

#: The form fields and their captions (the engine's captions where it has one).
TITLES: dict[str, str] = {"code": "Code", "description": "Description", **SETTING_TITLES}
TEXT_FIELDS = ("code", "description", "success_url", "error_url", "cancel_url")
URL_FIELDS = ("success_url", "error_url", "cancel_url")


@dataclass(frozen=True)
class PspChoice:
    """One PSP account offered in the PSP dropdown (``value`` is ``plugin:account``)."""

    plugin: str
    account: str
    title: str
    problem: str | None = None

    @property
    def value(self) -> str:
        return f"{self.plugin}:{self.account}"

    @property
    def label(self) -> str:
        name = self.plugin if self.account == "default" else f"{self.plugin} / {self.account}"
        return f"{name} ({self.problem})" if self.problem else name


@dataclass
class FormCheck:
    """The outcome of checking a submitted form."""

    values: dict[str, Any]
    setup: PaymentMethodSetup | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """setting -> the sentence shown next to it."""
    message: str | None = None
    """The refusal as one sentence (shown above the form)."""
    code: str | None = None
    capabilities: list[str] = field(default_factory=list)
    """Titles of the features the chosen PSP account declares."""

    @property
    def ok(self) -> bool:
        return self.setup is not None and not self.errors and self.message is None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "code": self.code, "message": self.message, "errors": self.errors,
                "fields": sorted(self.errors), "capabilities": self.capabilities}


def psp_choices(engine: PaymentEngine) -> list[PspChoice]:
    """Every configured account of every loaded PSP plugin ("default" always, plus the
    ``[accounts.<plugin>.<name>]`` ones); an account whose settings do not load is listed with
    the reason and cannot be chosen."""
    choices: list[PspChoice] = []
    for plugin in engine.plugins.active(PluginKind.PSP):
        names = ["default", *sorted(n for n in engine.settings.accounts.get(plugin.name, {}) if n != "default")]
        for account in names:
            problem = None
            try:
                engine.capabilities(plugin.name, account)
            except PayweaveError as exc:
                problem = "not configured" if exc.code == "configuration_error" else exc.code.replace("_", " ")
            title = plugin.info.title if plugin.info else plugin.name
            choices.append(PspChoice(plugin.name, account, title, problem))
    return choices


def capability_titles(caps: PspCapabilities) -> list[str]:
    return [Feature(name).title for name, declared in caps.matrix().items() if declared]


def blank_values() -> dict[str, Any]:
    values: dict[str, Any] = {name: "" for name in TEXT_FIELDS}
    values.update({name: False for name in OPTION_FIELDS})
    values.update(psp="", capture_timing=CaptureTiming.MANUAL.value, refund_timing=RefundTiming.MANUAL.value)
    return values


def values_of(setup: PaymentMethodSetup) -> dict[str, Any]:
    values = blank_values()
    values.update({name: getattr(setup, name) or "" for name in TEXT_FIELDS})
    values.update({name: bool(getattr(setup, name)) for name in OPTION_FIELDS})
    values.update(psp=f"{setup.psp}:{setup.psp_account}", capture_timing=setup.capture_timing.value,
                  refund_timing=setup.refund_timing.value)
    return values


def values_from_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The submitted values (checkboxes: present = on), stripped; unknown fields ignored."""
    values = blank_values()
    for name in (*TEXT_FIELDS, "psp", "capture_timing", "refund_timing"):
        raw = form.get(name)
        if isinstance(raw, str):
            values[name] = raw.strip()
    for name in OPTION_FIELDS:
        raw = form.get(name)
        values[name] = isinstance(raw, str) and raw.lower() in ("on", "true", "1", "yes")
    values["code"] = str(values["code"]).upper()
    return values


def _settings_of(exc: PayweaveError) -> list[str]:
    details = exc.details or {}
    named = details.get("settings")
    if isinstance(named, list | tuple):
        return [str(n) for n in named]
    one = details.get("setting")
    return [str(one)] if one else []


def field_message(message: str, code: str) -> str:
    """The refusal as shown next to a setting: without the "Payment method CODE: " lead-in
    (the form is that payment method), capitalised."""
    lead = f"Payment method {code}: "
    text = message[len(lead):] if message.startswith(lead) else message
    return text[:1].upper() + text[1:]


def check_form(engine: PaymentEngine, company_id: str, values: dict[str, Any]) -> FormCheck:
    """Build the setup from ``values`` and validate it as the engine does on save."""
    result = FormCheck(values=values)
    psp_value = str(values.get("psp") or "")
    plugin, _, account = psp_value.partition(":")
    if not plugin:
        result.errors["psp"] = "Choose the PSP that serves this payment method."
    data: dict[str, Any] = {
        "company_id": company_id, "code": values.get("code", ""), "description": values.get("description", ""),
        "psp": plugin or "-", "psp_account": account or "default",
        "capture_timing": values.get("capture_timing") or CaptureTiming.MANUAL.value,
        "refund_timing": values.get("refund_timing") or RefundTiming.MANUAL.value,
        **{name: bool(values.get(name)) for name in OPTION_FIELDS},
        **{name: (values.get(name) or None) for name in URL_FIELDS},
    }
    for name in URL_FIELDS:
        url = data[name]
        if url and not (url.startswith("https://") or url.startswith("http://")):
            result.errors[name] = f"'{TITLES[name]}' must be an http:// or https:// address."
    try:
        setup = PaymentMethodSetup(**data)
    except ValidationError as exc:
        for error in exc.errors(include_input=False):
            loc = str(error["loc"][0]) if error["loc"] else "code"
            name = loc if loc in TITLES else "code"
            result.errors.setdefault(name, f"'{TITLES.get(name, name)}': {error['msg']}.")
        result.message = "Correct the marked fields."
        return result
    if result.errors:
        result.message = "Correct the marked fields."
        return result
    try:
        caps = engine.capabilities(setup.psp, setup.psp_account)
    except PayweaveError as exc:
        result.errors["psp"] = exc.message
        result.message, result.code = exc.message, exc.code
        return result
    result.capabilities = capability_titles(caps)
    try:
        validate_setup(setup, caps)
    except PayweaveError as exc:
        result.message, result.code = exc.message, exc.code
        for name in _settings_of(exc) or ["psp"]:
            result.errors[name] = field_message(exc.message, setup.code)
        return result
    result.setup = setup
    return result


__all__ = [
    "FormCheck",
    "PspChoice",
    "TITLES",
    "blank_values",
    "capability_titles",
    "check_form",
    "field_message",
    "psp_choices",
    "values_from_form",
    "values_of",
]
