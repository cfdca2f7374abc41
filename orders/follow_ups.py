"""The orders' effects, declared to the follow-up engine: what each is, where it runs, what it does.

Checkout writes one row of each checkout kind with the order (``services.order_follow_ups_new``);
the orders' scheduled jobs write the rest (``orders/recurring.py``): the "shipped" email, the
review request, the abandoned-cart reminder and the staff's sales report. The engine runs them
through these declarations.
"""

from follow_ups.models import FollowUp
from follow_ups.registry import Kind, register
from notifications.services import EMAIL_DELIVERY_TRAITS
from orders import recurring, services
from orders.models import Order
from orders.payments import PaymentUnknown
from orders.services import CONFIRMATION_EMAIL, INVOICE, PAYMENT_VOID, WAREHOUSE_SYNC
from orders.warehouse import WarehouseUnavailable


def _order_of(follow_up: FollowUp) -> Order:
    return Order.objects.get(pk=follow_up.subject.removeprefix("order:"))


def register_kinds() -> None:
    register(
        Kind(
            name=CONFIRMATION_EMAIL,
            label="Confirmation email",
            queue="critical",
            perform=lambda follow_up: services.confirmation_email_send(order=_order_of(follow_up)),
            **EMAIL_DELIVERY_TRAITS,
        )
    )
    register(
        Kind(
            name=WAREHOUSE_SYNC,
            label="Warehouse sync",
            queue="default",
            perform=lambda follow_up: services.shipment_create(order=_order_of(follow_up)),
            transient=(WarehouseUnavailable,),
            provider="warehouse",
        )
    )
    register(
        Kind(
            name=INVOICE,
            label="Invoice",
            queue="bulk",
            perform=lambda follow_up: services.invoice_create(order=_order_of(follow_up)),
        )
    )
    register(
        Kind(
            name=PAYMENT_VOID,
            label="Payment void",
            queue="critical",
            perform=lambda follow_up: services.payment_void(
                attempt_id=follow_up.subject.removeprefix("payment:")
            ),
            transient=(PaymentUnknown, OSError),
            provider="payment-gateway",
        )
    )
    for name, label, queue, perform in [
        (recurring.SHIPPED_EMAIL, "Shipped email", "default", recurring.shipped_email_send),
        (
            recurring.REVIEW_REQUEST_EMAIL,
            "Review request email",
            "bulk",
            recurring.review_request_email_send,
        ),
        (
            recurring.CART_REMINDER_EMAIL,
            "Cart reminder email",
            "default",
            recurring.cart_reminder_email_send,
        ),
        (
            recurring.SALES_REPORT_EMAIL,
            "Sales report email",
            "bulk",
            recurring.sales_report_email_send,
        ),
    ]:
        register(
            Kind(
                name=name,
                label=label,
                queue=queue,
                perform=perform,
                **EMAIL_DELIVERY_TRAITS,
            )
        )
