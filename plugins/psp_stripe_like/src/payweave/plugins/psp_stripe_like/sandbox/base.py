"""The sandbox ledger's foundation: object store, ids, events, journal, lists, expansion, time.

Objects are kept in their API shape (plain dicts, exactly what the API returns), keyed by id;
facts the API does not show (a card's test behaviour, which payout a balance transaction
went into) live in ``internal``. Every public operation runs under ``lock`` (the HTTP layer
takes it), so the ledger is consistent under concurrent requests.
"""
from __future__ import annotations

import copy
import random
import string
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import SandboxClock
from .errors import invalid, missing
from .params import Params
from .settings import SandboxSettings

_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Ctx:
    """Who asked: the request id and idempotency key end up in events' ``request``."""

    request_id: str | None = None
    idempotency_key: str | None = None
    base_url: str = "http://127.0.0.1"


class Ids:
    def __init__(self, seed: int | None):
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.Lock()

    def new(self, prefix: str, length: int = 24) -> str:
        with self._lock:
            return prefix + "_" + "".join(self._rng.choice(_ALPHABET) for _ in range(length))


class LedgerBase:
    def __init__(self, settings: SandboxSettings, clock: SandboxClock, ids: Ids):
        self.settings = settings
        self.clock = clock
        self.ids = ids
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, Any]] = {}
        self.order: dict[str, list[str]] = defaultdict(list)  # object type -> ids, oldest first
        self.internal: dict[str, dict[str, Any]] = defaultdict(dict)
        self.journal: list[dict[str, Any]] = []
        self._deferred: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        #: Called (under the lock) with each new event and the endpoints it goes to.
        self.event_sink: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None

    # ---------------------------------------------------------------- basics
    def now(self) -> int:
        return self.clock.now()

    def store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        self.order[obj["object"]].append(obj["id"])
        return obj

    def find(self, object_type: str, object_id: str | None) -> dict[str, Any] | None:
        obj = self.objects.get(object_id or "")
        return obj if obj is not None and obj["object"] == object_type else None

    def get(self, object_type: str, label: str, object_id: str, *, param: str | None = None) -> dict[str, Any]:
        obj = self.find(object_type, object_id)
        if obj is None:
            raise missing(label, object_id, param=param)
        return obj

    def record(self, op: str, **fields: Any) -> None:
        """Append to the journal: the sandbox's own audit trail of money movements."""
        self._seq += 1
        self.journal.append({"seq": self._seq, "at": self.now(), "op": op, **fields})

    def defer(self, due: int, action: Callable[[], None]) -> None:
        self._seq += 1
        self._deferred.append((due, self._seq, action))

    @staticmethod
    def snapshot(obj: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(obj)

    # ---------------------------------------------------------------- events
    def emit(
        self, event_type: str, obj: dict[str, Any], ctx: Ctx | None, previous_attributes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        endpoints = [
            ep
            for ep in (self.objects[i] for i in self.order["webhook_endpoint"])
            if ep["status"] == "enabled" and ("*" in ep["enabled_events"] or event_type in ep["enabled_events"])
        ]
        data: dict[str, Any] = {"object": self.snapshot(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event = self.store(
            {
                "id": self.ids.new("evt"),
                "object": "event",
                "api_version": self.settings.api_version,
                "created": self.now(),
                "data": data,
                "livemode": False,
                "pending_webhooks": len(endpoints),
                "request": {
                    "id": ctx.request_id if ctx else None,
                    "idempotency_key": ctx.idempotency_key if ctx else None,
                },
                "type": event_type,
            }
        )
        if self.event_sink is not None and endpoints:
            self.event_sink(self.snapshot(event), [self.snapshot(ep) for ep in endpoints])
        return event

    def webhook_delivered(self, event_id: str) -> None:
        with self.lock:
            event = self.objects.get(event_id)
            if event is not None and event["pending_webhooks"] > 0:
                event["pending_webhooks"] -= 1

    # ---------------------------------------------------------------- rendering
    def render(self, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
        result = self.snapshot(obj)
        for path in expand or []:
            self._expand(result, path.split("."), path)
        return result

    def _expand(self, node: Any, parts: list[str], path: str) -> None:
        if not parts or node is None:
            return
        if len(parts) > 4 or not isinstance(node, dict):
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        head, rest = parts[0], parts[1:]
        if head not in node:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        value = node[head]
        if head == "data" and isinstance(value, list):
            for item in value:
                self._expand(item, rest, path)
            return
        if isinstance(value, str):
            target = self.objects.get(value)
            if target is None or value.startswith("evt_"):
                raise invalid(f"This property cannot be expanded ({path}).", param="expand")
            value = node[head] = self.snapshot(target)
        elif value is not None and not isinstance(value, dict):
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        self._expand(value, rest, path)

    def list_response(
        self,
        object_type: str,
        p: Params,
        url: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _o: True,
        extra: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> dict[str, Any]:
        """Stripe list: newest first, ``limit`` (1-100, default 10), ``starting_after``/``ending_before``."""
        p.only({"limit", "starting_after", "ending_before", "expand", "created", *extra})
        limit = p.int("limit", minimum=1, maximum=100) or 10
        created = self._created_filter(p)
        starting_after = p.str("starting_after")
        ending_before = p.str("ending_before")
        if starting_after and ending_before:
            raise invalid("You may only specify one of these parameters: starting_after, ending_before.", param="ending_before")
        expand = [e for e in p.expand()]
        items = [self.objects[i] for i in reversed(self.order[object_type])]
        items = [o for o in items if predicate(o) and created(o.get("created", 0))]
        if starting_after:
            index = next((i for i, o in enumerate(items) if o["id"] == starting_after), None)
            if index is None:
                raise missing(object_type, starting_after, param="starting_after")
            window = items[index + 1 :]
            page, has_more = window[:limit], len(window) > limit
        elif ending_before:
            index = next((i for i, o in enumerate(items) if o["id"] == ending_before), None)
            if index is None:
                raise missing(object_type, ending_before, param="ending_before")
            window = items[:index]
            page, has_more = window[-limit:], len(window) > limit
        else:
            page, has_more = items[:limit], len(items) > limit
        body = {"object": "list", "data": [self.snapshot(o) for o in page], "has_more": has_more, "url": url}
        for path in expand:
            if not path.startswith("data."):
                raise invalid(f"This property cannot be expanded ({path}).", param="expand")
            self._expand(body, path.split("."), path)
        return body

    @staticmethod
    def _created_filter(p: Params) -> Callable[[int], bool]:
        """``created=T`` or ``created[gt|gte|lt|lte]=T`` (unix seconds)."""
        raw = p.tree.get("created")
        if raw is None:
            return lambda _t: True
        if isinstance(raw, str):
            exact = p.int("created")
            return lambda t: t == exact
        bounds = p.sub("created", {"gt", "gte", "lt", "lte"})
        gt, gte, lt, lte = (bounds.int(k) for k in ("gt", "gte", "lt", "lte"))
        return lambda t: (
            (gt is None or t > gt) and (gte is None or t >= gte) and (lt is None or t < lt) and (lte is None or t <= lte)
        )

    # ---------------------------------------------------------------- time
    def tick(self, ctx: Ctx | None = None) -> None:
        """Apply everything that is due at the sandbox's current time (called before each request)."""
        now = self.now()
        while True:
            due = sorted(d for d in self._deferred if d[0] <= now)
            if not due:
                break
            for item in due:
                self._deferred.remove(item)
                item[2]()
        self._tick_resources(now)

    def _tick_resources(self, now: int) -> None:  # extended by the resource mixins
        pass
