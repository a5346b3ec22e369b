"""QR codes as inline SVG: the Get Link result's code of the link for a phone, and the code an
authenticator app scans to add the portal. Paths only, no style attribute and no script, so the
pages' Content-Security-Policy needs no exception; the size comes from CSS.

The ``qrcode`` package is imported when a code is first drawn: it pulls in Pillow's drawing
modules, about 20 MB that a web worker serving images and searches would otherwise carry.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def qr_svg(data: str, *, label: str = "", border: int = 4, css_class: str = "qr-code") -> str:
    """An SVG QR code of ``data`` (error correction M), labelled for screen readers when
    ``label`` is given."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M
    from qrcode.image.svg import SvgPathImage

    code = qrcode.QRCode(
        error_correction=ERROR_CORRECT_M, border=border, image_factory=SvgPathImage
    )
    code.add_data(data)
    code.make(fit=True)
    root = ET.fromstring(code.make_image().to_string(encoding="unicode"))  # noqa: S314
    for name in ("width", "height"):
        root.attrib.pop(name, None)
    if css_class:
        root.set("class", css_class)
    root.set("shape-rendering", "crispEdges")
    if label:
        root.set("role", "img")
        root.set("aria-label", label)
    for path in root.iter(f"{{{SVG_NAMESPACE}}}path"):
        path.attrib.pop("id", None)
    # qrcode registers the "svg:" prefix; HTML wants the SVG namespace as the default one.
    ET.register_namespace("", SVG_NAMESPACE)
    return ET.tostring(root, encoding="unicode")
