"""``eventlog export --otel`` and ``--otlp-endpoint``: a run as an OpenTelemetry
trace (:mod:`eventlog.otel`), written to a file or stdout and/or POSTed to an
OTLP/HTTP receiver.  The conventions (one-line errors, exit status 1) are
:mod:`eventlog.cli`'s."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from .cli import _fail, _store
from .otel import dumps, trace

#: Seconds to wait for an OTLP/HTTP receiver to connect and answer.
TIMEOUT = 30.0
#: The OTLP/HTTP path of trace data.
TRACES_PATH = "/v1/traces"


def export_otel(path: str, session: str, at: int | None, output: str | None, allow_nan: bool,
                endpoint: str | None, fmt: str) -> None:  # fmt: skip
    """The trace of ``session`` (and its sub-agents) to ``output`` (stdout when
    ``None`` and no ``endpoint``) and POSTed to ``endpoint``."""
    if at is not None:
        raise click.UsageError("--otel cannot be used with --at: a trace is of a whole run, its sub-agents too "
                               '(export without --otel writes the session at a seq)')  # fmt: skip
    if allow_nan:
        raise click.UsageError("--otel cannot be used with --allow-nan: a trace is strict JSON")
    url = traces_url(endpoint) if endpoint is not None else None
    with _store(path) as store:
        text = dumps(trace(store, session, fmt))
    if output is not None:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    elif url is None:
        click.echo(text)
    if url is not None:
        post(url, text.encode("utf-8"))


def traces_url(endpoint: str) -> str:
    """``endpoint`` + ``/v1/traces`` unless it already ends so; one-line error
    unless an http(s) URL."""
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as e:
        _fail(f"--otlp-endpoint {endpoint!r} is not a valid URL: {e}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _fail(f"--otlp-endpoint {endpoint!r} is not an http:// or https:// URL")
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would follow a POST's 301-303 as a GET
    without the trace, and report success."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, f"{msg} (a redirect to {newurl}: not followed)", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes) -> None:
    """POST ``body`` (OTLP JSON) to ``url``; a one-line error (exit status 1) when
    the receiver cannot be reached, answers an HTTP error or rejects spans."""
    try:
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            answer = response.read()
    except urllib.error.HTTPError as e:
        detail = _first_line(e.read())
        _fail(f"OTLP receiver {url} answered {e.code} {e.reason}" + (f": {detail}" if detail else ""))
    except urllib.error.URLError as e:
        _fail(f"cannot reach OTLP receiver {url}: {getattr(e.reason, 'strerror', None) or e.reason}")
    except TimeoutError:
        _fail(f"OTLP receiver {url} did not answer within {TIMEOUT:g} s")
    except OSError as e:  # (a connection reset while reading the answer, ...)
        _fail(f"OTLP receiver {url}: {e.strerror or e}")
    except (http.client.HTTPException, ValueError) as e:  # (a malformed URL or answer)
        _fail(f"OTLP receiver {url}: {type(e).__name__}: {_first_line(str(e).encode())}")
    rejected, why = _partial(answer)
    if rejected:
        _fail(f"OTLP receiver {url} rejected {rejected} span(s)" + (f": {why}" if why else ""))


def _partial(answer: bytes) -> tuple[int, str]:
    """``partialSuccess`` of an ``ExportTraceServiceResponse`` in JSON: spans
    rejected and why (0 when the answer is empty or not JSON)."""
    try:
        data: Any = json.loads(answer or b"{}")
    except ValueError:
        return 0, ""
    partial = data.get("partialSuccess") if type(data) is dict else None
    if type(partial) is not dict:
        return 0, ""
    try:
        rejected = int(partial.get("rejectedSpans") or 0)
    except (TypeError, ValueError):
        rejected = 0
    why = partial.get("errorMessage")
    return rejected, _first_line(why.encode("utf-8", "replace")) if type(why) is str else ""


def _first_line(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else ""
