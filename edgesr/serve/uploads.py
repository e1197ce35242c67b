"""Request bodies into the service's work folder, within the size limit, and the image header
checked against the pixel limit before anything is decoded."""

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edgesr.errors import EdgesrError, first_line


class RequestError(EdgesrError):
    """A request the service refuses: an HTTP status, a one-line reason, optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


async def receive_upload(request, target: Path, max_bytes: int) -> Path:
    """Write the image a request carries to ``target``: the raw body, or the multipart field
    ``file``. More than ``max_bytes`` of body is a 413; no image is a 400."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"upload of {int(declared)} bytes exceeds the limit of "
                                f"{max_bytes} bytes")
    content_type = request.headers.get("content-type", "")
    with open(target, "xb") as out:
        if content_type.startswith("multipart/form-data"):
            await _receive_multipart(request, content_type, out, max_bytes)
        else:
            async for chunk in _limited(request, max_bytes):
                out.write(chunk)
        size = out.tell()
    if not size:
        raise RequestError(400, "no image in the request: send it as the body or as the "
                                "multipart field 'file'")
    return target


async def _limited(request, max_bytes: int):
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise RequestError(413, f"upload exceeds the limit of {max_bytes} bytes")
        yield chunk


async def _receive_multipart(request, content_type: str, out, max_bytes: int) -> None:
    """Stream the multipart body, keeping the bytes of the part named ``file``."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart body without a boundary")
    state = {"field": b"", "value": b"", "is_file": False, "found": False}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        if state["field"].lower() == b"content-disposition":
            options = parse_options_header(state["value"])[1]
            state["is_file"] = options.get(b"name") == b"file"
            state["found"] |= state["is_file"]
        state["field"] = state["value"] = b""

    def on_part_data(data, start, end):
        if state["is_file"]:
            out.write(data[start:end])

    def on_part_begin():
        state["is_file"] = False

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data,
        "on_part_begin": on_part_begin})
    try:
        async for chunk in _limited(request, max_bytes):
            parser.write(chunk)
        parser.finalize()
    except RequestError:
        raise
    except Exception as exc:  # python-multipart's parse errors
        raise RequestError(400, f"malformed multipart body: {first_line(exc)}") from None
    if not state["found"]:
        raise RequestError(400, "the multipart body has no field named 'file'")


def inspect_image(path: Path, max_pixels: int) -> tuple[int, int, str]:
    """(width, height, Pillow format) from the image header; 413 above ``max_pixels``, 400 for
    what is not an image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            fmt = image.format or ""
    except UnidentifiedImageError:
        raise RequestError(400, "not an image, or not a format this server reads") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise RequestError(400, f"cannot read the image header: {first_line(exc)}") from None
    except Image.DecompressionBombError:
        raise RequestError(413, "image too large to decode safely") from None
    if width * height > max_pixels:
        raise RequestError(413, f"image of {width}x{height} = {width * height} pixels exceeds "
                                f"the limit of {max_pixels} pixels")
    return width, height, fmt
