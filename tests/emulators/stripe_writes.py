"""The Stripe emulator's creates: customers, payment intents (confirmed ones make their
charge) and refunds, each recording its event as Stripe does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.emulators.common import Request, Response
from tests.emulators.stripe_errors import error, missing

if TYPE_CHECKING:
    from tests.emulators.stripe import Stripe

__all__ = ["create_customer", "create_payment_intent", "create_refund"]


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as the API shows it (without the emulator's bookkeeping)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


# -- creates -------------------------------------------------------------------------


def create_customer(emu: Stripe, req: Request) -> Response:
    p = emu.params(req)
    fields = {k: p[k] for k in ("email", "name", "description", "phone") if k in p}
    made = emu.add("customer", metadata=p.get("metadata") or {}, **fields)
    emu._event("customer.created", made)
    emu._created("customer")
    return Response.json(public(made))


def create_payment_intent(emu: Stripe, req: Request) -> Response:
    p = emu.params(req)
    for name in ("amount", "currency"):
        if name not in p:
            return missing(name)
    try:
        amount = int(p["amount"])
    except (TypeError, ValueError):
        return error(
            400,
            "invalid_request_error",
            "Invalid integer: " + str(p["amount"]),
            code="parameter_invalid_integer",
            param="amount",
        )
    confirm = str(p.get("confirm", "false")) == "true"
    made = emu.add(
        "payment_intent",
        amount=amount,
        currency=p["currency"],
        customer=p.get("customer"),
        description=p.get("description"),
        metadata=p.get("metadata") or {},
        payment_method=p.get("payment_method"),
        status="succeeded" if confirm else "requires_payment_method",
        amount_received=amount if confirm else 0,
        last_payment_error=None,
        latest_charge=None,
    )
    emu._event("payment_intent.created", made)
    if confirm:
        charge = emu.add(
            "charge",
            amount=amount,
            amount_captured=amount,
            amount_refunded=0,
            captured=True,
            paid=True,
            refunded=False,
            currency=p["currency"],
            customer=p.get("customer"),
            payment_intent=made["id"],
            status="succeeded",
        )
        made["latest_charge"] = charge["id"]
        emu._event("charge.succeeded", charge)
        emu._event("payment_intent.succeeded", made)
    emu._created("payment_intent")
    return Response.json(public(made))


def create_refund(emu: Stripe, req: Request) -> Response:
    p = emu.params(req)
    if not p.get("charge") and not p.get("payment_intent"):
        return missing("charge")
    charge = _charge_of(emu, p)
    if isinstance(charge, Response):
        return charge
    left = charge["amount"] - charge.get("amount_refunded", 0)
    amount = int(p.get("amount", left))
    if left <= 0:
        return error(
            400,
            "invalid_request_error",
            f"Charge {charge['id']} has already been refunded.",
            code="charge_already_refunded",
        )
    if amount > left:
        return error(
            400,
            "invalid_request_error",
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            param="amount",
        )
    charge["amount_refunded"] = charge.get("amount_refunded", 0) + amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    made = emu.add(
        "refund",
        amount=amount,
        charge=charge["id"],
        payment_intent=charge.get("payment_intent"),
        currency=charge.get("currency", "usd"),
        metadata=p.get("metadata") or {},
        reason=p.get("reason"),
        status="succeeded",
    )
    emu._event("charge.refunded", charge)
    emu._created("refund")
    return Response.json(public(made))


def _charge_of(emu: Stripe, p: dict[str, Any]) -> dict[str, Any] | Response:
    if p.get("charge"):
        found = [c for c in emu.objects["charge"] if c["id"] == p["charge"]]
        if not found:
            return error(
                400,
                "invalid_request_error",
                f"No such charge: '{p['charge']}'",
                code="resource_missing",
                param="charge",
            )
        return found[0]
    intents = [i for i in emu.objects["payment_intent"] if i["id"] == p["payment_intent"]]
    if not intents:
        return error(
            400,
            "invalid_request_error",
            f"No such payment_intent: '{p['payment_intent']}'",
            code="resource_missing",
            param="payment_intent",
        )
    charges = [c for c in emu.objects["charge"] if c["id"] == intents[0].get("latest_charge")]
    if not charges:
        return error(
            400,
            "invalid_request_error",
            f"This PaymentIntent ({intents[0]['id']}) does not have a successful charge to refund.",
            param="payment_intent",
        )
    return charges[0]
