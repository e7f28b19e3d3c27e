"""CRC32C (Castagnoli), as TensorFlow checksums checkpoint tensors and LevelDB table blocks, in numpy.

A byte-at-a-time CRC in Python would take minutes for a 50 MB checkpoint, so long inputs are cut into many
equal chunks whose CRCs advance together, one numpy step per byte position, and the chunk CRCs are then joined
pairwise. Joining rests on the CRC register being linear over GF(2): the register after A || B equals the
register after A carried through |B| zero bytes, xor the register B alone leaves from zero.
"""

from __future__ import annotations

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
    lanes = _MAX_LANES
    while lanes > 1 and len(buffer) // lanes < _MIN_CHUNK:
        lanes //= 2
    if lanes == 1:
        return _advance_bytes(register, buffer)
    chunk = len(buffer) // lanes
    head = len(buffer) - lanes * chunk
    register = _advance_bytes(register, buffer[:head])
    # Column j holds byte j of every chunk, so each step reads one contiguous row.
    columns = np.ascontiguousarray(buffer[head:].reshape(lanes, chunk).T)
    states = np.zeros(lanes, dtype=np.uint32)
    for row in columns:
        states = _TABLE[(states ^ row) & 0xFF] ^ (states >> 8)
    # Join neighbours pairwise: after level k each state covers chunk * 2**k bytes.
    span = chunk
    while len(states) > 1:
        shift = _ZeroShift(span)
        states = shift.apply(states[0::2]) ^ states[1::2]
        span *= 2
    return _ZeroShift(span).apply_int(register) ^ int(states[0])


def _advance_bytes(register: int, data: np.ndarray) -> int:
    table = _TABLE_LIST
    for byte in data.tobytes():
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


class _ZeroShift:
    """The linear map 'feed `length` zero bytes' on the 32-bit register, as four 256-entry byte tables."""

    def __init__(self, length: int) -> None:
        columns = _zero_bytes_matrix(length)
        self.tables = np.zeros((4, 256), dtype=np.uint32)
        for position in range(4):
            for bit in range(8):
                image = columns[8 * position + bit]
                with_bit = np.arange(256) & (1 << bit) != 0
                self.tables[position, with_bit] ^= np.uint32(image)

    def apply(self, states: np.ndarray) -> np.ndarray:
        t = self.tables
        return (
            t[0][states & 0xFF]
            ^ t[1][(states >> 8) & 0xFF]
            ^ t[2][(states >> 16) & 0xFF]
            ^ t[3][states >> 24]
        )

    def apply_int(self, register: int) -> int:
        return int(self.apply(np.array([register], dtype=np.uint32))[0])


def _zero_bytes_matrix(length: int) -> list[int]:
    """Images of the 32 unit registers after `length` zero bytes (the map's columns), by repeated squaring."""
    one_byte = [_TABLE_LIST[(1 << bit) & 0xFF] ^ ((1 << bit) >> 8) for bit in range(32)]
    result = [1 << bit for bit in range(32)]  # identity
    power = one_byte
    while length:
        if length & 1:
            result = [_apply_columns(power, column) for column in result]
        power = [_apply_columns(power, column) for column in power]
        length >>= 1
    return result


def _apply_columns(columns: list[int], register: int) -> int:
    out = 0
    bit = 0
    while register:
        if register & 1:
            out ^= columns[bit]
        register >>= 1
        bit += 1
    return out
