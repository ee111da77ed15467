"""Argument checks and copies in the caller's thread, encoding in the sender's.

Checks look only at shapes and dtypes, never at values, so they cost no device
synchronization. Row sampling happens on the tensor's own device. The caller
takes one copy of what it logs (a plain copy on the host; for CUDA tensors an
asynchronous copy into pinned host memory on the current stream, which the
sender waits for through a CUDA event); the sender thread reads those copies.
Both torch and numpy release the GIL while they copy.
"""

import random
import sys

import numpy as np

from entrowatch.v1 import entrowatch_pb2 as pb

_NUMPY_DTYPES = {np.dtype("float16"): pb.FLOAT16, np.dtype("float32"): pb.FLOAT32}


def torch_module():
    """torch if the program imported it; a torch tensor cannot exist otherwise."""
    return sys.modules.get("torch")


def is_torch(x):
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def as_array(x, name):
    """A detached torch tensor or a numpy array view of x (no copy)."""
    if is_torch(x):
        return x.detach()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)) or hasattr(x, "__array__"):
        return np.asarray(x)
    raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}")


def check_float(x, name):
    if is_torch(x):
        torch = torch_module()
        ok = x.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    else:
        ok = x.dtype.kind == "f" and x.dtype.itemsize in (2, 4, 8)
    if not ok:
        raise TypeError(f"{name} must be floating point (float32, float16, bfloat16 or float64), "
                        f"got {x.dtype}")


def check_int(x, name):
    if is_torch(x):
        ok = not x.dtype.is_floating_point and not x.dtype.is_complex and x.dtype != torch_module().bool
    else:
        ok = x.dtype.kind in "iu"
    if not ok:
        raise TypeError(f"{name} must hold integers, got {x.dtype}")


def numel(x):
    return x.numel() if is_torch(x) else x.size


def nbytes(x):
    return x.numel() * x.element_size() if is_torch(x) else x.nbytes


def flatten_leading(x, trailing):
    """Reshapes to [-1, *x.shape[-trailing:]]; a view when the layout allows."""
    tail = tuple(x.shape[len(x.shape) - trailing:]) if trailing else ()
    return x.reshape((-1,) + tail)


def sample_indices(n, k):
    """Sorted distinct row indices, k of n (all rows when k is None or >= n).

    Floyd's algorithm: O(k) whatever n, and cheaper than random.sample, whose
    population type check dominates at this size.
    """
    if k is None or k >= n:
        return None
    chosen = set()
    draw = random.random
    for j in range(n - k, n):
        t = int(draw() * (j + 1))
        chosen.add(j if t in chosen else t)
    return sorted(chosen)


def take_rows(x, indices):
    """Rows of x in host memory; always a copy, so the caller may reuse x.
    For a CUDA tensor the copy is asynchronous (see copy_of)."""
    if indices is None:
        return copy_of(x)
    if is_torch(x):
        torch = torch_module()
        if x.device.type == "cpu" and x.dtype != torch.bfloat16:
            # numpy's fancy indexing of the same memory costs a fraction of a
            # torch dispatch, and this runs on the trainer's thread.
            return x.numpy()[indices]
        rows = x.index_select(0, index_on(indices, x.device))
        return _pinned_copy(rows) if rows.is_cuda else rows
    return x[indices]


def index_on(indices, device):
    """A list of ints as a long tensor on device, copied without blocking."""
    index = torch_module().as_tensor(indices)
    if device.type == "cuda":
        # A blocking host-to-device copy would synchronize the trainer's stream.
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)


def cuda_event(*tensors):
    """An event recorded on the current CUDA stream after the work that makes
    tensors and after the copies of them to pinned memory, or None when none is
    on a GPU. The sender waits on it before it reads those copies."""
    torch = torch_module()
    for t in tensors:
        if is_torch(t) and t.is_cuda:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(t.device))
            return event
    return None


def copy_of(x):
    """A copy the caller cannot change: host memory for host data, and for a
    CUDA tensor a pinned host buffer filled asynchronously on the current stream."""
    if is_torch(x):
        return _pinned_copy(x) if x.is_cuda else x.clone()
    return np.array(x, copy=True)


def _pinned_copy(x):
    # Pinned memory makes the copy asynchronous; torch caches pinned blocks, so
    # after the first steps this allocates nothing.
    host = torch_module().empty(x.shape, dtype=x.dtype, pin_memory=True)
    host.copy_(x, non_blocking=True)
    return host


def bad_rows(x, valid_vocab):
    """Bool numpy array, one per row of a host copy [rows, vocab]: rows holding NaN
    or +inf, or all -inf, within the first valid_vocab columns. One pass (the row
    maximum propagates NaN), in torch or numpy, both without the GIL."""
    if is_torch(x):
        torch = torch_module()
        return (~torch.isfinite(x[:, :valid_vocab].amax(dim=1))).numpy()
    if x.dtype == np.float16:  # numpy reduces float16 slowly; float32 holds it exactly
        x = x.astype(np.float32)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(np.max(x[:, :valid_vocab], axis=1))


def scalar_value(x, name):
    """A float, or a 0-d/1-element tensor kept lazily (read in the sender; a CUDA
    tensor is copied to pinned memory asynchronously)."""
    if is_torch(x):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(x.shape)}")
        return keep(x.detach())
    if isinstance(x, np.ndarray):
        if x.size != 1:
            raise ValueError(f"{name} must be a scalar, got an array of shape {x.shape}")
        return float(x.reshape(()))
    try:
        return float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a scalar tensor, got {type(x).__name__}") from None


def keep(x):
    """x for the sender to read later: a CUDA tensor starts its asynchronous copy
    to pinned memory; anything else is returned as is."""
    if is_torch(x) and x.is_cuda:
        return _pinned_copy(x)
    return x


def resolve_scalar(x):
    return float(x.item()) if is_torch(x) else float(x)


def to_host(x):
    """(contiguous numpy array in a wire dtype, wire DType) of a host copy;
    bfloat16 stays as raw uint16 bits."""
    if is_torch(x):
        torch = torch_module()
        x = x.detach().to("cpu")  # a no-op for the host copies log calls take
        if x.dtype == torch.bfloat16:
            return x.contiguous().view(torch.int16).numpy().view(np.uint16), pb.BFLOAT16
        if x.dtype == torch.float64:
            x = x.float()
        x = x.numpy()
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    x = np.ascontiguousarray(x.astype(x.dtype.newbyteorder("<"), copy=False))
    return x, _NUMPY_DTYPES[np.dtype(x.dtype.name)]


def to_host_ints(x):
    if is_torch(x):
        x = x.detach().to("cpu").numpy()
    return np.asarray(x, dtype=np.int64)


def as_float32(host, dtype):
    """float32 values of an array returned by to_host (for finiteness checks)."""
    if dtype == pb.BFLOAT16:
        return (host.astype(np.uint32) << 16).view(np.float32)
    return host.astype(np.float32, copy=False)
