"""The invoice document: an A4 PDF drawn with ReportLab."""

import functools
import io
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from orders.models import Order


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
            ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.grey),
            ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
            ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
        ]
    )


def invoice_pdf(order: Order) -> bytes:
    styles = _styles()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=f"Invoice {order.number}",
        author="Celery Shop",
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
    )
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
    story = [
        Paragraph(f"Invoice {order.number}", styles["Title"]),
        Paragraph(f"Date: {order.created_at:%Y-%m-%d}", styles["Normal"]),
        Paragraph(f"Payment: {order.payment_reference}", styles["Normal"]),
        Spacer(1, 8 * mm),
        Paragraph("Billed to", styles["Heading3"]),
        Paragraph(address, styles["Normal"]),
        Paragraph(escape(order.email), styles["Normal"]),
        Spacer(1, 8 * mm),
        table,
        Spacer(1, 12 * mm),
        Paragraph("Thank you for shopping at Celery Shop.", styles["Italic"]),
    ]
    document.build(story)
    return buffer.getvalue()
