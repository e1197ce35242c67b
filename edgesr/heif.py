"""HEIC/HEIF and AVIF, the formats phones and NAS photo libraries hold.

HEIC/HEIF is read and written through pillow-heif (``pip install 'edgesr[heif]'``), imported
only when such a file is met; AVIF through Pillow's own AVIF plugin (Pillow 11.3 and later).
``edgesr.imageio`` calls ``prepare`` before it opens or writes one of these files; both are
8-bit formats there (16-bit sources are written at 8 bits, as for JPEG and WebP).
"""

from pathlib import Path

#: File extension -> Pillow format name.
FORMATS = {".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF"}
#: Quality edgesr writes HEIC/HEIF at (pillow-heif's default is 50).
HEIF_QUALITY = 90


def register_openers() -> bool:
    """Teach Pillow to open HEIC/HEIF when pillow-heif is installed; whether it is."""
    try:
        import pillow_heif
    except ImportError:
        return False
    if not getattr(register_openers, "done", False):
        pillow_heif.register_heif_opener()
        pillow_heif.options.QUALITY = HEIF_QUALITY
        register_openers.done = True
    return True


def prepare(path: Path, error: type[Exception]) -> None:
    """Make ``path``'s format readable and writable, or raise ``error`` saying what to install.
    Files of other formats pass untouched."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt == "HEIF" and not register_openers():
        raise error(f"{path}: HEIC/HEIF needs pillow-heif: pip install 'edgesr[heif]'")
    if fmt == "AVIF":
        from PIL import features

        if not features.check("avif"):
            raise error(f"{path}: AVIF needs a Pillow built with AVIF support (Pillow >= 11.3)")
