"""A small driver of headless Chromium over the DevTools protocol, with no dependency.

``chromium --remote-debugging-pipe`` reads protocol commands from its fd 3 and
writes responses and events to its fd 4, each a JSON message ended by a NUL byte.
:class:`Browser` starts Chromium with two pipes there (``bash`` moves them to fds
3 and 4 before it ``exec``s Chromium: the pipes' own numbers are whatever the
test process had free), opens one page (``Target.createTarget``, then
``Target.attachToTarget`` with ``flatten``: commands for the page carry its
``sessionId``) and offers what the tests need: go to an address, evaluate
JavaScript in the page (``Runtime.evaluate`` with ``awaitPromise`` and
``returnByValue``), wait until an expression holds, type into a field (its
value set, an ``input`` event dispatched) and click an element.  Every wait has
a deadline; a message that does not come in time fails the test, never hangs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _high(fd: int) -> int:
    """``fd`` moved to a number above 9 (the old one closed)."""
    out = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return out


class BrowserError(AssertionError):
    """The browser did not answer as expected (a failed test, not a crash)."""


class Browser:
    """One headless Chromium with one page; a context manager (closes Chromium)."""

    def __init__(self, profile: Path, *, timeout: float = 30.0) -> None:
        assert CHROMIUM is not None, "no chromium"
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # The child's ends above fd 9: moving them to 3 and 4 cannot overwrite each other.
        to_chrome_r, from_chrome_w = (_high(fd) for fd in (to_chrome_r, from_chrome_w))
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
            f"--user-data-dir={profile}", "--window-size=1000,1200", "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        script = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, CHROMIUM, *flags],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, page=False)[
                "sessionId"
            ]
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ the protocol

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            data = data[os.write(self._to_chrome, data) :]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium closed its pipe (exit status {self.proc.poll()})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        out: dict[str, Any] = json.loads(message)
        return out

    def call(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> dict[str, Any]:
        """Send a command (to the page, or with ``page=False`` to the browser) and
        return its result; events that arrive meanwhile go to :attr:`events`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._receive(deadline)
            if got.get("id") == self._next_id:
                if "error" in got:
                    raise BrowserError(f"{method}: {got['error']}")
                result: dict[str, Any] = got.get("result", {})
                return result
            if "method" in got:
                self.events.append(got)

    # ------------------------------------------------------------------ what the tests do

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expression[:200]}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float = 10.0) -> Any:
        """The expression's value once truthy; polled until ``timeout`` seconds pass
        (a page being replaced by another meanwhile is waited out)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.js(expression)
                if last:
                    return last
            except BrowserError as e:  # e.g. the execution context was destroyed by a navigation
                last = e
            if time.monotonic() >= deadline:
                raise BrowserError(f"still not true after {timeout} s: {expression[:200]} (last: {last!r})")
            time.sleep(0.1)

    def goto(self, url: str) -> None:
        """Load ``url`` and wait until its document is complete."""
        r = self.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise BrowserError(f"cannot load {url}: {r['errorText']}")
        self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def text(self, selector: str = "body") -> str:
        """The text of the first element ``selector`` matches ("" if none)."""
        return str(self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"))

    def type(self, selector: str, text: str) -> None:
        """Set the value of the field ``selector`` and dispatch ``input`` (as typing does)."""
        self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); "
            f"e.value = {json.dumps(text)}; e.dispatchEvent(new Event('input', {{bubbles: true}})); "
            f"e.dispatchEvent(new Event('change', {{bubbles: true}})); }})()"
        )

    def click(self, selector: str) -> None:
        """Click the first element ``selector`` matches."""
        found = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; "
            "e.click(); return true; })()"
        )
        if not found:
            raise BrowserError(f"nothing to click: {selector}")

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):  # (gone already)
                self._send({"id": 0, "method": "Browser.close", "params": {}})
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for fd in (self._to_chrome, self._from_chrome):
            if fd >= 0:
                os.close(fd)
        self._to_chrome = self._from_chrome = -1

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
