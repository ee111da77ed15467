"""Report serialization that copies tensor bytes once, without holding the GIL.

A Report is written as protobuf wire format by hand around its tensor data:
the small fields go through protobuf's own serializer, and each Tensor's
`data` field is written as its key and length followed by the raw bytes of a
host array. The pieces are copied once into one `bytes` object with
ctypes.memmove, which releases the GIL, so a 10 MB report keeps the training
thread waiting for the interpreter only for microseconds, not for the
milliseconds a bytes join or protobuf's copies would hold it. Field order
differs from protobuf's own output (tensor data last within each message),
which every protobuf parser accepts.
"""

import ctypes

import numpy as np

from entrowatch.v1 import entrowatch_pb2 as pb

_LEN = 2  # wire type of length-delimited fields
# Below this many array bytes, one bytes join (under the GIL) is cheaper than
# a ctypes call per piece.
_MEMMOVE_MIN_BYTES = 256 << 10


def _varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(message, field):
    number = message.DESCRIPTOR.fields_by_name[field].number
    return _varint((number << 3) | _LEN)


_TENSOR_DATA = _key(pb.Tensor, "data")
_LOGITS_BLOCK_LOGITS = _key(pb.LogitsBlock, "logits")
_ATTENTION_Q = _key(pb.AttentionBlock, "q")
_ATTENTION_K = _key(pb.AttentionBlock, "k")
_REPORT_LOGITS = _key(pb.Report, "logits")
_REPORT_ATTENTION = _key(pb.Report, "attention")


class Pieces:
    """A serialized message as a sequence of bytes and contiguous host arrays."""

    __slots__ = ("parts", "size")

    def __init__(self, head=b""):
        self.parts = [head] if head else []
        self.size = len(head)

    def add(self, part):
        self.parts.append(part)
        self.size += part.nbytes if isinstance(part, np.ndarray) else len(part)

    def add_field(self, key, message):
        """Appends `message` (Pieces) as a length-delimited field."""
        self.add(key + _varint(message.size))
        self.parts.extend(message.parts)
        self.size += message.size


def tensor(dtype, host):
    """A Tensor message whose data is the bytes of host (a little-endian numpy array)."""
    host = np.ascontiguousarray(host)
    out = Pieces(pb.Tensor(dtype=dtype, shape=list(host.shape)).SerializeToString())
    out.add(_TENSOR_DATA + _varint(host.nbytes))
    if host.nbytes:
        out.add(host.reshape(-1).view(np.uint8))
    return out


def logits_block(meta, logits):
    """A LogitsBlock: meta (pb.LogitsBlock without logits) plus the logits Tensor (Pieces)."""
    out = Pieces(meta.SerializeToString())
    out.add_field(_LOGITS_BLOCK_LOGITS, logits)
    return out


def attention_block(meta, q, k):
    out = Pieces(meta.SerializeToString())
    out.add_field(_ATTENTION_Q, q)
    out.add_field(_ATTENTION_K, k)
    return out


def report(head, logits_blocks, attention_blocks):
    """The wire bytes of a Report: head (pb.Report without logits and attention)
    followed by the blocks (Pieces), in order."""
    out = Pieces(head.SerializeToString())
    for block in logits_blocks:
        out.add_field(_REPORT_LOGITS, block)
    for block in attention_blocks:
        out.add_field(_REPORT_ATTENTION, block)
    return join(out)


def join(pieces):
    """One bytes object holding every piece in order."""
    parts = _merge_bytes(pieces.parts)
    array_bytes = sum(p.nbytes for p in parts if isinstance(p, np.ndarray))
    if array_bytes < _MEMMOVE_MIN_BYTES:
        return b"".join(parts)
    # bytes(n) is a fresh zeroed object no other code can see yet: filling it
    # in place is what C code does with PyBytes_FromStringAndSize(NULL, n).
    out = bytes(pieces.size)
    base = ctypes.cast(out, ctypes.c_void_p).value
    offset = 0
    for part in parts:
        if isinstance(part, np.ndarray):
            ctypes.memmove(base + offset, part.ctypes.data, part.nbytes)
            offset += part.nbytes
        else:
            ctypes.memmove(base + offset, part, len(part))
            offset += len(part)
    assert offset == pieces.size
    return out


def _merge_bytes(parts):
    """Joins runs of consecutive bytes parts, so each array costs one copy call."""
    merged = []
    run = []
    for part in parts:
        if isinstance(part, np.ndarray):
            if run:
                merged.append(b"".join(run))
                run = []
            merged.append(part)
        else:
            run.append(part)
    if run:
        merged.append(b"".join(run))
    return merged
