"""Hook dispatch: a PSP capture through the plugin manager's typed facade vs calling the
plugin's hook function directly (target ratio <= 3)."""
from __future__ import annotations

import gc
import time
import uuid

from common import Result

from payweave.core.plugins import PluginManager
from payweave.core.settings import PayweaveSettings
from payweave.hooks.models import CaptureRequest, Money, ReserveRequest
from payweave.plugins.psp_mock import plugin as mock_plugin
from payweave.plugins.psp_mock import reset_ledgers

SIZES = {"smoke": 300, "full": 20_000}


def _reserve(psp, account, n: int, tag: str) -> list[str]:
    refs = []
    for i in range(n):
        result = psp.reserve(
            account,
            ReserveRequest(idempotency_key=f"{tag}-r-{i}", transaction_id=f"{tag}-{i}", amount=Money.of("10.00", "EUR")),
        )
        refs.append(result.psp_reference)
    return refs


def run(size: str) -> list[Result]:
    n = SIZES[size]
    reset_ledgers()
    manager = PluginManager(PayweaveSettings(plugins="psp_mock"))
    manager.load_entrypoints()
    psp = manager.psp("psp_mock")
    account = manager.account("psp_mock", f"bench-{uuid.uuid4().hex[:6]}")
    amount = Money.of("10.00", "EUR")

    def requests(refs: list[str], tag: str) -> list[CaptureRequest]:
        return [
            CaptureRequest(idempotency_key=f"{tag}-c-{i}", transaction_id=f"{tag}-{i}", psp_reference=ref, amount=amount)
            for i, ref in enumerate(refs)
        ]

    def timed(calls) -> float:
        gc.collect()  # the garbage of building the requests is not charged to the side timed next
        start = time.perf_counter()
        calls()
        return time.perf_counter() - start

    # Interleave rounds so drift (caches, the ledger growing) hits both sides alike, and take
    # turns going first (the side timed first ran slower: it took the collections the setup left).
    via_manager = direct = 0.0
    rounds = 10
    per_round = max(1, n // rounds)
    for r in range(rounds):
        reqs_m = requests(_reserve(psp, account, per_round, f"m{r}"), f"m{r}")
        reqs_d = requests(_reserve(psp, account, per_round, f"d{r}"), f"d{r}")

        def run_direct() -> None:
            for req in reqs_d:
                mock_plugin.psp_capture(account=account, request=req)

        def run_manager() -> None:
            for req in reqs_m:
                psp.capture(account, req)

        if r % 2:
            via_manager += timed(run_manager)
            direct += timed(run_direct)
        else:
            direct += timed(run_direct)
            via_manager += timed(run_manager)
    total = per_round * rounds
    per_call_manager = via_manager / total * 1e6
    per_call_direct = direct / total * 1e6
    ratio = per_call_manager / per_call_direct
    return [
        Result(
            name="hook_dispatch",
            metric="capture via plugin manager / direct hook call",
            value=round(per_call_manager, 2),
            unit="µs per capture",
            floor=round(per_call_direct, 2),
            target="ratio <= 3",
            context={"captures_each_side": total, "overhead_us": round(per_call_manager - per_call_direct, 2)},
        ).judge(round(ratio, 3), ratio <= 3)
    ]
