"""Read a TensorFlow checkpoint (tensor bundle: `PREFIX.index`, `PREFIX.data-?????-of-?????`) without TF.

The index is a LevelDB-style table (tensorflow/core/lib/io/table_format.md): uncompressed blocks of
prefix-compressed key/value entries, each block followed by a type byte and a masked CRC32C, and a 48-byte
footer ending in the magic 0xdb4775248b80fb57. Keys are variable names; each value is a `BundleEntryProto`
(tensorflow/core/protobuf/tensor_bundle.proto), decoded here by hand: dtype (1), shape (2), shard_id (3),
offset (4), size (5), crc32c (6, masked). The empty key holds the `BundleHeaderProto` (shards, endianness).
A tensor is `size` raw bytes at `offset` of its shard, little-endian, row-major; every one is checked against
its masked CRC32C before use.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from .crc32c import masked_crc32c

TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_BLOCK_TRAILER_BYTES = 5  # compression type byte + masked CRC32C
# TensorFlow DataType enum values (tensorflow/core/framework/types.proto) that a weights file may hold.
_DTYPES = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    9: np.dtype("<i8"),
    19: np.dtype("<f2"),
}


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives in a bundle and its checksum (`crc32c` is TensorFlow's masked CRC32C)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


@dataclass(frozen=True)
class BundleIndex:
    """A parsed `.index` file: the number of data shards and the entry of every tensor, by name."""

    path: Path
    num_shards: int
    entries: dict[str, BundleEntry]


def checkpoint_prefix(path: str | Path) -> Path:
    """The bundle prefix from a checkpoint directory, its `.index` file, or the prefix itself."""
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise WeightsError(
                f"{path} holds {len(indexes)} TensorFlow checkpoint index files (*.index); "
                "pass the .index file of the checkpoint to load"
            )
        path = indexes[0]
    return path.with_suffix("") if path.suffix == ".index" else path


def read_bundle_index(index_path: str | Path) -> BundleIndex:
    """Parse a tensor-bundle `.index` file, checking the footer magic and every block's CRC32C."""
    index_path = Path(index_path)
    try:
        data = index_path.read_bytes()
    except OSError as err:
        raise WeightsError(f"cannot read TensorFlow checkpoint index {index_path} ({err.strerror})") from err
    if len(data) < _FOOTER_BYTES or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise WeightsError(
            f"{index_path} is not a TensorFlow checkpoint index (no table footer magic 0xdb4775248b80fb57)"
        )
    footer = _Reader(data, len(data) - _FOOTER_BYTES, index_path)
    footer.varint(), footer.varint()  # the metaindex block handle: unused by tensor bundles
    index_offset, index_size = footer.varint(), footer.varint()
    entries: dict[str, BundleEntry] = {}
    header: bytes | None = None
    for _, handle in _block_entries(data, index_offset, index_size, index_path):
        handle_reader = _Reader(handle, 0, index_path)
        offset, size = handle_reader.varint(), handle_reader.varint()
        for key, value in _block_entries(data, offset, size, index_path):
            if key == b"":
                header = value
            else:
                name = key.decode("utf-8", errors="replace")
                entries[name] = _bundle_entry(name, value, index_path)
    num_shards = _header_shards(header, index_path)
    return BundleIndex(path=index_path, num_shards=num_shards, entries=entries)


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], BundleIndex]:
    """Every tensor of a TensorFlow checkpoint as a numpy array in TF layout, each CRC32C verified.

    `path` is a checkpoint directory with one `.index` file, that `.index` file, or the bundle prefix.
    Raises WeightsError naming the file and tensor on any mismatch.
    """
    prefix = checkpoint_prefix(path)
    index = read_bundle_index(prefix.with_name(prefix.name + ".index"))
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, entry in index.entries.items():
        if entry.shard_id not in shards:
            shards[entry.shard_id] = _read_shard(prefix, entry.shard_id, index.num_shards)
        shard = shards[entry.shard_id]
        shard_name = _shard_path(prefix, entry.shard_id, index.num_shards).name
        if entry.offset + entry.size > len(shard):
            raise WeightsError(
                f"{shard_name} is truncated: tensor {name} needs bytes {entry.offset}.."
                f"{entry.offset + entry.size} of a {len(shard)}-byte file; download the checkpoint again"
            )
        raw = memoryview(shard)[entry.offset : entry.offset + entry.size]
        if masked_crc32c(raw) != entry.crc32c:
            raise WeightsError(
                f"tensor {name} in {shard_name} fails its CRC32C check (the data file is corrupt or does not "
                f"belong to {index.path.name}); download the checkpoint again"
            )
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise WeightsError(
                f"tensor {name} in {index.path} has TensorFlow dtype {entry.dtype}, not supported"
            )
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise WeightsError(
                f"tensor {name} in {index.path}: {entry.size} bytes do not fit shape {entry.shape}"
            )
        tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(entry.shape).copy()
    return tensors, index


def _shard_path(prefix: Path, shard_id: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard_id:05d}-of-{num_shards:05d}")


def _read_shard(prefix: Path, shard_id: int, num_shards: int) -> bytes:
    path = _shard_path(prefix, shard_id, num_shards)
    try:
        return path.read_bytes()
    except OSError as err:
        raise WeightsError(
            f"cannot read the checkpoint data file {path} ({err.strerror}); it must sit beside "
            f"{prefix.name}.index"
        ) from err


def _block_entries(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of one table block, after checking its trailer (type 0 = raw, CRC32C)."""
    end = offset + size
    if end + _BLOCK_TRAILER_BYTES > len(data):
        raise WeightsError(f"{path} is truncated: a table block ends past the end of the file")
    compression = data[end]
    stored_crc = struct.unpack_from("<I", data, end + 1)[0]
    if masked_crc32c(data[offset : end + 1]) != stored_crc:
        raise WeightsError(f"{path} is corrupt: a table block at byte {offset} fails its CRC32C check")
    if compression != 0:
        raise WeightsError(
            f"{path} has a compressed table block (type {compression}); only raw blocks are read"
        )
    num_restarts = struct.unpack_from("<I", data, end - 4)[0]
    entries_end = end - 4 - 4 * num_restarts
    reader = _Reader(data, offset, path)
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    while reader.position < entries_end:
        shared, unshared, value_length = reader.varint(), reader.varint(), reader.varint()
        key = key[:shared] + reader.take(unshared)
        entries.append((key, reader.take(value_length)))
    return entries


def _bundle_entry(name: str, value: bytes, path: Path) -> BundleEntry:
    fields: dict[str, int] = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0}
    shape: tuple[int, ...] = ()
    numbers = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
    for number, payload in _Reader(value, 0, path).fields():
        if number == 2 and isinstance(payload, bytes):
            shape = _tensor_shape(payload, path)
        elif number in numbers and isinstance(payload, int):
            fields[numbers[number]] = payload
        elif number == 7:
            raise WeightsError(
                f"tensor {name} in {path} is stored in slices, which this reader does not support"
            )
    return BundleEntry(name=name, shape=shape, **fields)


def _tensor_shape(payload: bytes, path: Path) -> tuple[int, ...]:
    dims: list[int] = []
    for number, dim in _Reader(payload, 0, path).fields():
        if number == 2 and isinstance(dim, bytes):
            size = next((value for field, value in _Reader(dim, 0, path).fields() if field == 1), 0)
            dims.append(int(size))
    return tuple(dims)


def _header_shards(header: bytes | None, path: Path) -> int:
    if header is None:
        raise WeightsError(f"{path} has no bundle header entry; it is not a TensorFlow V2 checkpoint index")
    fields = dict(_Reader(header, 0, path).fields())
    if fields.get(2, 0) != 0:
        raise WeightsError(f"{path} describes a big-endian checkpoint; only little-endian ones are read")
    return int(fields.get(1, 1)) or 1


class _Reader:
    """Varints, length-delimited bytes and protobuf fields from a byte string."""

    def __init__(self, data: bytes, position: int, path: Path) -> None:
        self.data = data
        self.position = position
        self.path = path

    def varint(self) -> int:
        result = shift = 0
        while True:
            if self.position >= len(self.data) or shift > 63:
                raise WeightsError(f"{self.path} is corrupt: a varint runs past its record")
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def take(self, length: int) -> bytes:
        if self.position + length > len(self.data):
            raise WeightsError(f"{self.path} is corrupt: a record runs past its block")
        chunk = self.data[self.position : self.position + length]
        self.position += length
        return bytes(chunk)

    def fields(self) -> list[tuple[int, int | bytes]]:
        """(field number, value) of a protobuf message: varints as int, fixed32/64 as int, bytes as bytes."""
        fields: list[tuple[int, int | bytes]] = []
        while self.position < len(self.data):
            tag = self.varint()
            number, wire_type = tag >> 3, tag & 7
            if wire_type == 0:
                fields.append((number, self.varint()))
            elif wire_type == 1:
                fields.append((number, struct.unpack("<Q", self.take(8))[0]))
            elif wire_type == 2:
                fields.append((number, self.take(self.varint())))
            elif wire_type == 5:
                fields.append((number, struct.unpack("<I", self.take(4))[0]))
            else:
                raise WeightsError(
                    f"{self.path} is corrupt: protobuf wire type {wire_type} in a bundle entry"
                )
        return fields
