"""The invoice document: an A4 PDF drawn with ReportLab."""

import functools
import io
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from xml.sax.saxutils import escape

from django.conf import settings
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from orders.models import Order, invoice_display_number

CENT = Decimal("0.01")


def vat_included(total: Decimal, percent: Decimal) -> Decimal:
    """The VAT inside a price that includes it: total × rate / (100 + rate), to the cent."""
    return (total * percent / (100 + percent)).quantize(CENT, rounding=ROUND_HALF_UP)


@functools.cache
def _styles():
    """ReportLab's sample style sheet, built once per process: building it costs more than a
    small invoice's layout (bench.micro invoice_styles). Styles are only read while drawing."""
    return getSampleStyleSheet()


@functools.cache
def _table_style() -> TableStyle:
    return TableStyle(
        [
            ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f7")),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
            ("LINEABOVE", (0, -3), (-1, -3), 0.5, colors.grey),
            ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
            ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
        ]
    )


def invoice_pdf(
    order: Order, *, number: int | None = None, issued: datetime | None = None
) -> bytes:
    """The invoice: seller (``INVOICE_SELLER_*``), its own number, the buyer, the lines, and the
    VAT the prices include (``INVOICE_VAT_PERCENT``). Without a number, a pro-forma (benchmarks)."""
    styles = _styles()
    buffer = io.BytesIO()
    title = f"Invoice {invoice_display_number(number)}" if number else "Pro-forma invoice"
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=title,
        author=settings.INVOICE_SELLER_NAME,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
    )
    percent = Decimal(str(settings.INVOICE_VAT_PERCENT))
    vat = vat_included(order.total, percent)
    # Amounts with thousands separators, as on the order page and in the email.
    rows = [["Item", "SKU", "Qty", "Unit price", "Amount"]]
    rows += [
        [
            Paragraph(escape(line.name), styles["Normal"]),
            line.sku,
            str(line.quantity),
            f"{line.unit_price:,.2f}",
            f"{line.subtotal:,.2f}",
        ]
        for line in order.lines.all()
    ]
    rows.append(["", "", "", "Net (EUR)", f"{order.total - vat:,.2f}"])
    rows.append(["", "", "", f"VAT {percent.normalize():f}%", f"{vat:,.2f}"])
    rows.append(["", "", "", "Total (EUR)", f"{order.total:,.2f}"])
    table = Table(rows, colWidths=[70 * mm, 30 * mm, 15 * mm, 25 * mm, 25 * mm])
    table.setStyle(_table_style())
    # Customer text goes into ReportLab's markup, so it is escaped like HTML would be.
    address = "<br/>".join(
        escape(part)
        for part in (
            order.name,
            order.address_line1,
            f"{order.address_postal_code} {order.address_city}",
            order.address_country,
        )
    )
    seller = "<br/>".join(
        escape(part)
        for part in (
            settings.INVOICE_SELLER_NAME,
            *settings.INVOICE_SELLER_ADDRESS.split("\n"),
            f"VAT number {settings.INVOICE_SELLER_VAT_NUMBER}",
        )
    )
    issued = issued or order.created_at
    story = [
        Paragraph(escape(title), styles["Title"]),
        Paragraph(seller, styles["Normal"]),
        Spacer(1, 6 * mm),
        Paragraph(f"Invoice date: {issued:%Y-%m-%d}", styles["Normal"]),
        Paragraph(f"Order {escape(order.number)} of {order.created_at:%Y-%m-%d}", styles["Normal"]),
        Paragraph(f"Payment: {escape(order.payment_reference)}", styles["Normal"]),
        Spacer(1, 8 * mm),
        Paragraph("Billed to", styles["Heading3"]),
        Paragraph(address, styles["Normal"]),
        Paragraph(escape(order.email), styles["Normal"]),
        Spacer(1, 8 * mm),
        table,
        Spacer(1, 4 * mm),
        Paragraph(
            f"Prices include VAT at {percent.normalize():f}%. Paid in full by card.",
            styles["Normal"],
        ),
        Spacer(1, 8 * mm),
        Paragraph(
            f"Thank you for shopping with {escape(settings.INVOICE_SELLER_NAME)}", styles["Italic"]
        ),
    ]
    document.build(story)
    return buffer.getvalue()
