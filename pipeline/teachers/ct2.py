"""Reader for CTranslate2 `model.bin` files, including files split into several parts.

Format (the writer is `ctranslate2/specs/model_spec.py::_serialize`, native little-endian):
u32 binary version, string spec name, u32 spec revision, u32 variable count; per variable:
string name, u8 rank, rank x u32 shape, u8 dtype id, u32 byte count, raw bytes; then u32 alias
count and per alias two strings (alias, target). A string is a u16 length that counts a
trailing NUL, the UTF-8 bytes, then the NUL.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

# Order of the DataType enum (model_spec._dtype_to_type_id); bfloat16 is read as raw uint16.
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, np.uint16)
_BFLOAT16 = 5
SUPPORTED_VERSIONS = (5, 6)


class CT2FormatError(ValueError):
    """A file that is not a CTranslate2 model.bin this reader understands."""


@dataclass
class CT2Model:
    """Variables of one model.bin: name -> numpy array (stored dtype, bfloat16 widened to float32)."""

    spec: str
    revision: int
    version: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)
    sha256: str = ""


class _ChainedReader:
    """Read several files as one byte stream, so split model.bin parts need no joined copy."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = [Path(p) for p in paths]
        self.sizes = [p.stat().st_size for p in self.paths]
        self.index = 0
        self.handle: BinaryIO = open(self.paths[0], "rb")
        self.digest = hashlib.sha256()

    def read(self, n: int) -> bytes:
        """Read exactly n bytes across part boundaries (and hash them)."""
        chunks = []
        while n > 0:
            chunk = self.handle.read(n)
            if not chunk:
                if self.index + 1 >= len(self.paths):
                    raise CT2FormatError(f"{self.paths[-1]}: file ends early; a part is missing or truncated")
                self.handle.close()
                self.index += 1
                self.handle = open(self.paths[self.index], "rb")
                continue
            chunks.append(chunk)
            n -= len(chunk)
        data = b"".join(chunks)
        self.digest.update(data)
        return data

    def skip(self, n: int) -> None:
        """Advance n bytes; the bytes still enter the checksum so it covers the whole file."""
        while n > 0:
            step = min(n, 1 << 24)
            self.read(step)
            n -= step

    def at_end(self) -> bool:
        """True when every byte of every part has been consumed."""
        return self.index == len(self.paths) - 1 and self.handle.tell() == self.sizes[-1]

    def close(self) -> None:
        """Close the current part."""
        self.handle.close()

    def unpack(self, fmt: str) -> int:
        """Read one little-endian integer of struct format fmt."""
        return struct.unpack("<" + fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        """Read a u16-length-prefixed, NUL-terminated UTF-8 string."""
        length = self.unpack("H")
        return self.read(length)[:-1].decode("utf-8")


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """Widen bfloat16 stored as uint16 to float32 (bfloat16 is the top half of float32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2(paths: str | Path | Sequence[str | Path], keep: Callable[[str], bool] | None = None) -> CT2Model:
    """Parse a model.bin (or its parts, in byte order), keeping variables for which keep(name) holds."""
    parts = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for p in parts:
        if not p.is_file():
            raise FileNotFoundError(f"CTranslate2 model file {p} does not exist")
    reader = _ChainedReader(parts)
    try:
        version = reader.unpack("I")
        if version not in SUPPORTED_VERSIONS:
            raise CT2FormatError(
                f"{parts[0]}: CTranslate2 binary version {version} is not supported "
                f"(supported: {SUPPORTED_VERSIONS}); re-convert the model with ctranslate2>=3"
            )
        spec = reader.string()
        revision = reader.unpack("I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(reader.unpack("I")):
            name = reader.string()
            shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
            type_id = reader.unpack("B")
            nbytes = reader.unpack("I")
            if type_id >= len(_DTYPES):
                raise CT2FormatError(f"{parts[0]}: variable {name} has unknown dtype id {type_id}")
            if keep is not None and not keep(name):
                reader.skip(nbytes)
                continue
            array = np.frombuffer(bytearray(reader.read(nbytes)), dtype=_DTYPES[type_id]).reshape(shape)
            variables[name] = _bf16_to_f32(array) if type_id == _BFLOAT16 else array
        aliases = {}
        for _ in range(reader.unpack("I")):
            alias, target = reader.string(), reader.string()
            aliases[alias] = target
        if not reader.at_end():
            raise CT2FormatError(f"{parts[-1]}: trailing bytes after the aliases; wrong part order?")
    except struct.error as err:
        raise CT2FormatError(f"{parts[0]}: not a CTranslate2 model.bin ({err})") from err
    finally:
        reader.close()
    wanted = {a: t for a, t in aliases.items() if keep is None or keep(a)}
    missing = {t for t in wanted.values() if t not in variables}
    if missing:  # a kept alias points at a skipped variable: read again, keeping its target too
        return read_ct2(parts, lambda n: keep(n) or n in missing)
    variables.update({a: variables[t] for a, t in wanted.items()})
    return CT2Model(spec, revision, version, variables, aliases, reader.digest.hexdigest())


def package_model_files(packages: str | Sequence[str]) -> list[Path]:
    """Locate model.bin (or model.bin.part*) inside installed distributions, in byte order."""
    names = [packages] if isinstance(packages, str) else list(packages)
    found: list[Path] = []
    for name in names:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError as err:
            raise FileNotFoundError(
                f"Python package '{name}' is not installed; run `bash scripts/bootstrap.sh` "
                f"or `pip install {name}`"
            ) from err
        files = sorted(
            (f for f in dist.files or [] if f.name == "model.bin" or f.name.startswith("model.bin.part")),
            key=lambda f: f.name,
        )
        if not files:
            raise FileNotFoundError(f"package '{name}' ships no model.bin or model.bin.part* file")
        found.extend(Path(dist.locate_file(f)) for f in files)
    return found
