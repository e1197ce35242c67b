"""The device-compiled model kept beside an OpenVINO IR, so a built engine starts fast.

``edgesr build -b openvino --tile T [--device D]`` compiles the (static-shape) IR for device D
and keeps ``CompiledModel.export_model``'s bytes as ``<stem>.blob`` beside ``<stem>.xml``, with
``<stem>.compiled.json`` saying what it was compiled for: the device and its full name, the
OpenVINO version, the precision hint, the input shape, and the sha256 of the IR's two files and
of the blob. The runtime imports the blob instead of compiling when all of these match what it
is about to compile; otherwise it compiles and says why (other device, other OpenVINO, ...).
"""

import io
import json
from pathlib import Path

from edgesr.errors import EdgesrError, first_line
from edgesr.fsutil import sha256_file, write_bytes, write_text

BLOB_SUFFIX = ".blob"
SIDECAR_SUFFIX = ".compiled.json"


def paths(xml: Path) -> tuple[Path, Path]:
    """(blob, sidecar) of IR ``xml``."""
    return xml.with_suffix(BLOB_SUFFIX), xml.with_suffix(SIDECAR_SUFFIX)


def device_name(core, device: str) -> str:
    """The full name of OpenVINO device ``device`` (e.g. the CPU model)."""
    return str(core.get_property(device, "FULL_DEVICE_NAME"))


def _ir_digest(xml: Path) -> str:
    return f"{sha256_file(xml)}:{sha256_file(xml.with_suffix('.bin'))}"


def export(core, xml: Path, device: str, hint: str, properties: dict) -> dict:
    """Compile IR ``xml`` (static input shape) for ``device`` at precision ``hint`` with
    ``properties`` and write its blob and sidecar beside it; return the sidecar's record."""
    import openvino as ov

    model = core.read_model(str(xml))
    shape = model.input(0).get_partial_shape()
    if shape.is_dynamic:
        raise EdgesrError(f"{xml}: a compiled model needs a static input shape (--tile)")
    try:
        compiled = core.compile_model(model, device, properties)
    except RuntimeError as exc:
        raise EdgesrError(f"openvino: compiling for {device} failed: {first_line(exc)}") from None
    blob, sidecar = paths(xml)
    stream = compiled.export_model()  # a BytesIO
    write_bytes(blob, stream.getvalue() if hasattr(stream, "getvalue") else bytes(stream))
    record = {"device": device, "device_name": device_name(core, device),
              "openvino": ov.get_version(), "hint": hint,
              "shape": [d.get_length() for d in shape], "ir_sha256": _ir_digest(xml),
              "blob_sha256": sha256_file(blob)}
    write_text(sidecar, json.dumps(record, indent=1))
    return record


def read(xml: Path) -> dict | None:
    """The sidecar record of IR ``xml``, or None when it has none (or an unreadable one)."""
    try:
        record = json.loads(paths(xml)[1].read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def mismatch(core, xml: Path, record: dict, device: str, hint: str, shape: list[int]) -> str:
    """Why ``record`` (a sidecar of ``xml``) cannot be imported for ``device``, ``hint`` and
    input ``shape`` here; "" when it can."""
    import openvino as ov

    checks = (
        ("device", device, "device"),
        ("device_name", device_name(core, device) if device in core.available_devices
         else device, "device model"),
        ("openvino", ov.get_version(), "OpenVINO"),
        ("hint", hint, "precision"),
        ("shape", shape, "input shape"),
    )
    for key, here, what in checks:
        if record.get(key) != here:
            return f"it is for {what} {record.get(key)}, this run is {here}"
    blob = paths(xml)[0]
    if not blob.is_file() or sha256_file(blob) != record.get("blob_sha256"):
        return "its blob is missing or damaged"
    if _ir_digest(xml) != record.get("ir_sha256"):
        return "it was compiled from another IR"
    return ""


def load(core, xml: Path, device: str, hint: str, shape: list[int],
         properties: dict) -> tuple[object | None, str]:
    """(compiled model, note): the blob beside ``xml`` imported when its sidecar matches
    (note ""), else (None, why it was not used; "" when there is no blob)."""
    record = read(xml)
    if record is None:
        return None, ""
    why = mismatch(core, xml, record, device, hint, shape)
    if not why:
        try:
            with open(paths(xml)[0], "rb") as fh:
                return core.import_model(io.BytesIO(fh.read()), device, properties), ""
        except RuntimeError as exc:
            why = f"OpenVINO cannot import it: {first_line(exc)}"
    return None, f"compiled here: the compiled model beside the IR is not used ({why})"
