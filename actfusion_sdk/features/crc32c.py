"""CRC32C (Castagnoli), as TensorFlow checksums checkpoint tensors and LevelDB table blocks, in numpy.

A byte-at-a-time CRC in Python would take minutes for a 50 MB checkpoint, so long inputs are cut into many
equal chunks whose CRCs advance together, one numpy step per byte position, and the chunk CRCs are then joined
pairwise. Joining rests on the CRC register being linear over GF(2): the register after A || B equals the
register after A carried through |B| zero bytes, xor the register B alone leaves from zero.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reflected
_MASK_DELTA = 0xA282EAD8  # TensorFlow / LevelDB checksum masking
_MIN_CHUNK = 64  # below this many bytes per chunk the numpy steps cost more than they save
_MAX_LANES = 1 << 14


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(value) for value in _TABLE]


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The CRC32C of `data` (bytes, or an array's raw bytes in memory order)."""
    if isinstance(data, np.ndarray):
        buffer = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buffer = np.frombuffer(data, dtype=np.uint8)
    return _advance(0xFFFFFFFF, buffer) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """TensorFlow's masked CRC32C (rotated right by 15 bits plus a constant), as stored in checkpoints."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _advance(register: int, buffer: np.ndarray) -> int:
    """The CRC register after feeding `buffer` (uint8) into `register` (no final xor)."""
    if len(buffer) < 2 * _MIN_CHUNK:
        return _advance_bytes(register, buffer)
    # Chunks of a power-of-two length, so that every join below uses one of a few cached shift maps.
    chunk = max(_MIN_CHUNK, 1 << (-(-len(buffer) // _MAX_LANES) - 1).bit_length())
    lanes = len(buffer) // chunk
    head = len(buffer) - lanes * chunk
    register = _advance_bytes(register, buffer[:head])
    # Column j holds byte j of every chunk, so each step reads one contiguous row.
    columns = np.ascontiguousarray(buffer[head:].reshape(lanes, chunk).T)
    states = np.zeros(lanes, dtype=np.uint32)
    for row in columns:
        states = _TABLE[(states ^ row) & 0xFF] ^ (states >> 8)
    # Join neighbours pairwise: after level k each state covers chunk * 2**k bytes. Leading all-zero lanes
    # pad the count to a power of two; from a zero register, leading zero bytes change nothing.
    padding = (1 << (lanes - 1).bit_length()) - lanes
    states = np.concatenate([np.zeros(padding, dtype=np.uint32), states])
    level = chunk.bit_length() - 1
    while len(states) > 1:
        states = _apply_shift(_zero_shift(level), states[0::2]) ^ states[1::2]
        level += 1
    # The head's register, carried through the rest's length in zero bytes, joins the rest's register.
    length = lanes * chunk
    shifted = np.array([register], dtype=np.uint32)
    for bit in range(length.bit_length()):
        if length >> bit & 1:
            shifted = _apply_shift(_zero_shift(bit), shifted)
    return int(shifted[0] ^ states[0])


def _advance_bytes(register: int, data: np.ndarray) -> int:
    table = _TABLE_LIST
    for byte in data.tobytes():
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


@cache
def _zero_shift(level: int) -> np.ndarray:
    """The linear map 'feed 2**level zero bytes' on the 32-bit register, as four 256-entry byte tables."""
    if level == 0:
        columns = [_TABLE_LIST[(1 << bit) & 0xFF] ^ ((1 << bit) >> 8) for bit in range(32)]
    else:
        half = _zero_shift(level - 1)
        units = np.array([1 << bit for bit in range(32)], dtype=np.uint32)
        columns = [int(value) for value in _apply_shift(half, _apply_shift(half, units))]
    tables = np.zeros((4, 256), dtype=np.uint32)
    values = np.arange(256)
    for bit, image in enumerate(columns):
        tables[bit // 8, (values >> (bit % 8)) & 1 == 1] ^= np.uint32(image)
    return tables


def _apply_shift(tables: np.ndarray, states: np.ndarray) -> np.ndarray:
    return (
        tables[0][states & 0xFF]
        ^ tables[1][(states >> 8) & 0xFF]
        ^ tables[2][(states >> 16) & 0xFF]
        ^ tables[3][states >> 24]
    )
