"""A headless Chromium driven over the DevTools protocol, with the standard
library only (a minimal WebSocket client), and a PNG decoder for pixel checks.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib


def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class WebSocket:
    """Client side of RFC 6455, enough for DevTools: text frames, no extensions."""

    def __init__(self, url, timeout):
        assert url.startswith("ws://"), url
        hostport, _, path = url[len("ws://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket handshake")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("DevTools refused the WebSocket: " + head.decode(errors="replace"))

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send(self, text):
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def receive(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode == 0x9:  # ping
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self):
        self.sock.close()


class Browser:
    """One headless Chromium and one page, driven over DevTools."""

    def __init__(self, chromium, width=1400, height=1000, timeout=30):
        self.profile = tempfile.mkdtemp(prefix="entrowatch-chromium-")
        self.timeout = timeout
        self.process = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--force-device-scale-factor=1", f"--window-size={width},{height}",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.02)
        port = open(port_file).read().split()[0]
        targets = []
        while not any(t.get("type") == "page" for t in targets):
            if time.monotonic() > deadline:
                raise RuntimeError("chromium has no page target")
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"], timeout)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression, await_promise=False):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=await_promise, timeout=self.timeout * 1000)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url, ready_ms=15000):
        """Navigates and waits until the page marks itself ready (or has no
        console script). Returns (HTTP status, seconds to ready)."""
        start = time.monotonic()
        self.events_mark = len(self.events)
        self.call("Page.navigate", url=url)
        ready = self.evaluate(
            "new Promise((resolve) => {"
            f"  const end = Date.now() + {ready_ms};"
            "  const check = () => {"
            "    const b = document.body;"
            "    const loaded = document.readyState === 'complete';"
            "    if (loaded && b && (b.dataset.ready === '1' || !b.dataset.page ||"
            "                        b.dataset.page === 'notfound')) resolve(true);"
            "    else if (Date.now() > end) resolve(false);"
            "    else setTimeout(check, 10);"
            "  };"
            "  check();"
            "})", await_promise=True)
        elapsed = time.monotonic() - start
        status = None
        for event in self.events[self.events_mark:]:
            if (event["method"] == "Network.responseReceived" and
                    event["params"]["type"] == "Document"):
                status = event["params"]["response"]["status"]
        if not ready:
            raise RuntimeError(f"{url} did not become ready within {ready_ms} ms")
        return status, elapsed

    def errors(self):
        """Every console error or warning, uncaught exception or failed
        resource seen so far, as text."""
        out = []
        for event in self.events:
            method, params = event["method"], event["params"]
            if method == "Runtime.exceptionThrown":
                d = params["exceptionDetails"]
                out.append("exception: " + (d.get("exception", {}).get("description") or d["text"]))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning",
                                                                              "assert"):
                out.append(f"console.{params['type']}: " +
                           " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                out.append(f"log {params['entry']['level']}: {params['entry']['text']} "
                           f"({params['entry'].get('url', '')})")
        return out

    def clear_events(self):
        self.events = []

    def screenshot(self):
        """The whole page as a PNG (bytes)."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                               "scale": 1})
        return base64.b64decode(shot["data"])

    def close(self):
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def decode_png(data):
    """Returns (width, height, rows) with rows[y] a bytes of RGB triples.
    8-bit RGB or RGBA, non-interlaced (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos = 8
    idat = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    channels = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows = []
    previous = bytearray(stride)
    offset = 0
    for _ in range(height):
        kind = raw[offset]
        line = bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        previous = line
        if channels == 4:
            rgb = bytearray()
            for i in range(0, stride, 4):
                rgb += line[i:i + 3]
            rows.append(bytes(rgb))
        else:
            rows.append(bytes(line))
    return width, height, rows


def region_stats(image, rect):
    """(fraction of pixels that are not the region's most common colour,
    number of distinct colours) inside rect = (x, y, w, h)."""
    width, height, rows = image
    x0, y0 = max(0, int(rect[0])), max(0, int(rect[1]))
    x1, y1 = min(width, int(rect[0] + rect[2])), min(height, int(rect[1] + rect[3]))
    counts = {}
    for y in range(y0, y1):
        row = rows[y]
        for x in range(x0, x1):
            pixel = row[3 * x:3 * x + 3]
            counts[pixel] = counts.get(pixel, 0) + 1
    total = sum(counts.values())
    if total == 0:
        return 0.0, 0
    background = max(counts.values())
    return (total - background) / total, len(counts)


def _pixels(image, rect):
    width, height, rows = image
    x0, y0 = max(0, int(rect[0])), max(0, int(rect[1]))
    x1, y1 = min(width, int(rect[0] + rect[2])), min(height, int(rect[1] + rect[3]))
    for y in range(y0, y1):
        row = rows[y]
        for x in range(x0, x1):
            yield row[3 * x], row[3 * x + 1], row[3 * x + 2]


def parse_colour(text):
    """'#1565c0', 'rgb(1,2,3)' or 'rgba(1,2,3,0.5)' as an (r, g, b) tuple."""
    text = text.strip()
    if text.startswith("#"):
        return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
    inside = text[text.index("(") + 1:text.index(")")]
    return tuple(int(float(v)) for v in inside.split(",")[:3])


def colour_fraction(image, rect, colours, tolerance=60):
    """Fraction of the pixels in rect within `tolerance` (RGB distance) of
    one of `colours`."""
    targets = [parse_colour(c) for c in colours]
    total = hits = 0
    limit = tolerance * tolerance
    for r, g, b in _pixels(image, rect):
        total += 1
        for tr, tg, tb in targets:
            if (r - tr) ** 2 + (g - tg) ** 2 + (b - tb) ** 2 <= limit:
                hits += 1
                break
    return hits / total if total else 0.0


def ink_fraction(image, rect):
    """Fraction of the pixels in rect that are not white or near white."""
    total = ink = 0
    for r, g, b in _pixels(image, rect):
        total += 1
        if min(r, g, b) < 235:
            ink += 1
    return ink / total if total else 0.0
