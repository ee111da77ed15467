"""Background delivery of Reports over Monitor.Stream.

The trainer's thread only appends to a bounded queue (offer never blocks and
never raises). One sender thread encodes reports and writes them to the
stream; one reader thread per stream receives Acks. A report stays in the
unacknowledged window until its Ack arrives, so when the stream breaks
(daemon killed, restarted, network) the next stream resends the window in seq
order; the daemon acknowledges reports it had already folded in as duplicates.
"""

import collections
import logging
import queue
import threading
import time

import grpc

from entrowatch.v1 import entrowatch_pb2 as pb
from entrowatch.v1 import entrowatch_pb2_grpc as pb_grpc

logger = logging.getLogger("entrowatch")

_CODE_UNAVAILABLE = 14
# How long a freshly offered report rests before the sender encodes it.
_SETTLE_S = 0.001


class RateLimitedLog:
    """logger.warning at most once per interval for each key."""

    def __init__(self, interval_s=30.0):
        self._interval_s = interval_s
        self._last = {}
        self._suppressed = collections.Counter()
        self._lock = threading.Lock()

    def warning(self, key, msg, *args):
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args += (suppressed,)
        logger.warning(msg, *args)


class Stats:
    """Counters of one Monitor. Each field is written by one thread only."""

    def __init__(self):
        self.enqueued = 0
        self.dropped_queue_full = 0
        self.sent = 0
        self.resent = 0
        self.acked = 0
        self.rejected = 0
        self.duplicates = 0
        self.late = 0
        self.encode_errors = 0
        self.reconnects = 0


_STREAM_METHOD = "/{}/Stream".format(pb.DESCRIPTOR.services_by_name["Monitor"].full_name)


class _Stream:
    """One Monitor.Stream call: a request queue feeding the call, and its reader.
    Requests are already serialized Reports (bytes)."""

    def __init__(self, stream_call, on_ack, on_end, metadata=()):
        self._requests = queue.SimpleQueue()
        self.broken = False
        self.call = stream_call(self._request_iter(), wait_for_ready=True,
                                metadata=metadata or None)
        self.reader = threading.Thread(target=self._read, args=(on_ack, on_end),
                                       name="entrowatch-acks", daemon=True)
        self.reader.start()

    def _request_iter(self):
        while True:
            report = self._requests.get()
            if report is None:
                return
            yield report

    def _read(self, on_ack, on_end):
        error = None
        try:
            for ack in self.call:
                on_ack(ack)
        except grpc.RpcError as e:
            error = e
        on_end(self, error)

    def send(self, report):
        self._requests.put(report)

    def half_close(self):
        self._requests.put(None)


class Sender:
    """Owns the queue, the unacknowledged window, the channel and both threads."""

    def __init__(self, address, encode, on_ack, *, max_queue_reports, max_queue_bytes,
                 max_inflight, reconnect_max_s, warn, credentials=None, metadata=()):
        self._encode = encode
        self.metadata = tuple(metadata)
        self._on_ack_cb = on_ack
        self._max_queue_reports = max_queue_reports
        self._max_queue_bytes = max_queue_bytes
        self._max_inflight = max_inflight
        self._reconnect_max_s = reconnect_max_s
        self._warn = warn
        self.stats = Stats()

        max_ms = int(reconnect_max_s * 1000)
        options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.initial_reconnect_backoff_ms", min(100, max_ms)),
            ("grpc.min_reconnect_backoff_ms", min(100, max_ms)),
            ("grpc.max_reconnect_backoff_ms", max_ms),
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self.stub = pb_grpc.MonitorStub(self._channel)
        # Reports arrive serialized (see _wire): no request serializer.
        self._stream_call = self._channel.stream_stream(
            _STREAM_METHOD, request_serializer=None, response_deserializer=pb.Ack.FromString)

        self._cv = threading.Condition()
        self._queue = collections.deque()
        self._queue_bytes = 0
        self._unacked = collections.OrderedDict()  # seq -> serialized Report, in send order
        self._outstanding = 0  # queued + being encoded + unacknowledged
        self._stream = None
        self._failures = 0  # stream ends without any Ack in between
        self._next_connect = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="entrowatch-sender", daemon=True)
        self._thread.start()

    def offer(self, report):
        """Queues a report without blocking; False when it was dropped (queue full)."""
        with self._cv:
            if (self._stopping or len(self._queue) >= self._max_queue_reports
                    or self._queue_bytes + report.nbytes > self._max_queue_bytes):
                self.stats.dropped_queue_full += 1
                dropped = True
            else:
                report.offered = time.monotonic()
                self._queue.append(report)
                self._queue_bytes += report.nbytes
                self._outstanding += 1
                self.stats.enqueued += 1
                self._cv.notify()
                dropped = False
        if dropped:
            self._warn("queue_full", "entrowatch: report for step %d dropped, the send queue is "
                       "full (%d dropped so far); is entrowatchd reachable?", report.step,
                       self.stats.dropped_queue_full)
        return not dropped

    def wait_idle(self, timeout):
        """Blocks until every queued report is acknowledged or timeout (s) passes."""
        with self._cv:
            return self._cv.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self, timeout):
        """Drains for up to timeout seconds, then stops both threads."""
        deadline = time.monotonic() + max(timeout, 0.0)
        self.wait_idle(timeout)
        with self._cv:
            self._stopping = True
            lost = self._outstanding
            stream = self._stream
            self._cv.notify_all()
        self._thread.join(max(deadline - time.monotonic(), 0.0) + 1.0)
        if stream is not None:
            stream.half_close()
            stream.reader.join(max(deadline - time.monotonic(), 0.0))
            if stream.reader.is_alive():
                stream.call.cancel()
                stream.reader.join(1.0)
        if lost:
            logger.warning("entrowatch: closed with %d report(s) not acknowledged", lost)
        return lost == 0

    def shutdown_channel(self):
        """Releases the channel; call after close() and any last unary RPC."""
        self._channel.close()

    def _run(self):
        while True:
            with self._cv:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    stream_down = self._stream is None or self._stream.broken
                    if stream_down and now >= self._next_connect:
                        action = "connect"
                        break
                    if (self._queue and not stream_down
                            and len(self._unacked) < self._max_inflight):
                        action = "send"
                        report = self._queue.popleft()
                        self._queue_bytes -= report.nbytes
                        break
                    wait = self._next_connect - now if stream_down else None
                    self._cv.wait(wait)
            if action == "connect":
                self._connect()
            else:
                # A report handed over by a log call is usually followed by more
                # log calls of the same step: let the training thread finish them
                # before encoding takes the GIL (the send is asynchronous anyway).
                settle = _SETTLE_S - (time.monotonic() - report.offered)
                if settle > 0:
                    time.sleep(settle)
                self._send(report)

    def _connect(self):
        with self._cv:
            old = self._stream
        if old is not None:
            old.half_close()
            old.call.cancel()
            self.stats.reconnects += 1
        stream = _Stream(self._stream_call, self._on_ack, self._on_stream_end, self.metadata)
        with self._cv:
            self._stream = stream
            window = list(self._unacked.values())
            for report in window:
                stream.send(report)
        self.stats.resent += len(window)

    def _send(self, report):
        try:
            encoded = self._encode(report)
        except Exception:  # a bad tensor must not stop the sender
            logger.exception("entrowatch: could not encode the report for step %d", report.step)
            self.stats.encode_errors += 1
            with self._cv:
                self._outstanding -= 1
                self._cv.notify_all()
            return
        with self._cv:
            self._unacked[report.seq] = encoded
            self._stream.send(encoded)
        self.stats.sent += 1

    def _on_ack(self, ack):
        with self._cv:
            resend_later = ack.code == _CODE_UNAVAILABLE
            if not resend_later and self._unacked.pop(ack.seq, None) is not None:
                self._outstanding -= 1
                self.stats.acked += 1
                self.stats.duplicates += ack.duplicate
                self.stats.late += ack.late
                if ack.code != 0:
                    self.stats.rejected += 1
            if not resend_later:
                # Backoff restarts once the daemon takes reports again; an
                # over-capacity refusal keeps it growing.
                self._failures = 0
            self._cv.notify_all()
        if ack.code != 0 and not resend_later:
            self._warn(("code", ack.code), "entrowatch: report seq %d (step %d) rejected: code %d: %s",
                       ack.seq, ack.step, ack.code, ack.message)
        self._on_ack_cb(ack)

    def _on_stream_end(self, stream, error):
        with self._cv:
            if self._stopping or stream is not self._stream:
                return
            stream.broken = True
            delay = min(0.05 * (2 ** self._failures), self._reconnect_max_s)
            self._failures += 1
            self._next_connect = time.monotonic() + delay
            self._cv.notify_all()
        detail = error.code().name if error is not None else "closed by the daemon"
        self._warn("stream_end", "entrowatch: stream to the daemon ended (%s); reconnecting and "
                   "resending unacknowledged reports", detail)
