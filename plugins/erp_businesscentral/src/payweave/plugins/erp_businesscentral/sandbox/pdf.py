"""A small, valid PDF 1.4 for a sales document (what ``pdfDocument(..)/content`` returns).

Hand-built: catalog, pages, one page per 45 lines, Helvetica, text content streams and a
correct cross-reference table, so any PDF reader (and ``pypdf``/``pdftotext``) opens it.
"""
from __future__ import annotations

from typing import Any

from . import documents
from .model import Company, SalesDoc


def _escape(text: str) -> str:
    text = text.encode("latin-1", "replace").decode("latin-1")
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def build_pdf(title: str, lines: list[str]) -> bytes:
    per_page = 45
    pages = [lines[i:i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    objects: list[bytes] = []
    # 1 catalog, 2 pages, 3 font, 4 info, then (page, content) pairs
    page_ids = [5 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"<< /Type /Pages /Kids [" + b" ".join(f"{p} 0 R".encode() for p in page_ids)
                   + f"] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objects.append(f"<< /Title ({_escape(title)}) /Producer (payweave BC sandbox) >>".encode("latin-1"))
    for n, chunk in enumerate(pages):
        stream_lines = ["BT", "/F1 10 Tf", "50 800 Td", "14 TL"]
        if n == 0:
            stream_lines += ["/F1 14 Tf", f"({_escape(title)}) Tj", "T*", "/F1 10 Tf", "T*"]
        for text in chunk:
            stream_lines.append(f"({_escape(text)}) Tj T*")
        stream_lines.append("ET")
        stream = "\n".join(stream_lines).encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {page_ids[n] + 1} 0 R >>".encode())
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def render_document(company: Company, doc: SalesDoc, parent_type: str) -> bytes:
    currency = doc.currency or company.lcy
    precision = documents.doc_precision(doc, company.precision)
    text: list[str] = [
        f"{company.display_name}",
        f"{parent_type} {doc.number}",
        f"Customer: {doc.customer.number} {doc.name}",
        f"Document date: {doc.document_date}   Due date: {doc.due_date}",
        "",
        "Line  No.           Description                         Qty      Unit price      Amount",
    ]
    for ln in doc.lines:
        a = documents.line_amounts(ln, doc.prices_include_tax, precision)
        if ln.type == "Comment":
            text.append(f"{'':5} {'':13} {ln.description[:34]:34}")
            continue
        text.append(f"{ln.seq // 10000:<5} {ln.number[:13]:13} {ln.description[:34]:34} {ln.quantity:>6} "
                    f"{ln.unit_price:>14} {a.excl:>11}")
    rows: list[tuple[str, Any]] = [
        ("Total excl. tax", doc.total_excl), ("Tax", doc.total_tax), ("Total incl. tax", doc.total_incl),
    ]
    text.append("")
    for label, value in rows:
        text.append(f"{label:>70} {value:>14} {currency}")
    return build_pdf(f"{parent_type} {doc.number}", text)
