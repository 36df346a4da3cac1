"""The HTML incident page, opened in real headless Chromium: what a person would see, and nothing fetched.

Screenshots are kept under pytest's tmp dir (printed with -s); look at them when the page changes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from moduletrace.analysis.diagnosis import Diagnoser, DiagnosisReport
from moduletrace.analysis.races import RaceDetector
from moduletrace.analysis.report import RaceReport
from moduletrace.cli.html import render_html, write_html
from moduletrace.cli.main import main
from moduletrace.cli.render import as_json
from moduletrace.conventions import CACHE_HIT, DATA_FOUND, ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE
from moduletrace.spans import Span
from tests.support.builders import PROCESS_A, PROCESS_B, span
from tests.viewing.browser import chromium

RACED_LOADS = 5_000
#: Hosts headless Chromium calls by itself whatever the page (component updater, sign-in, network time).
CHROMIUM_OWN_HOSTS = {
    "update.googleapis.com",
    "clients2.google.com",
    "accounts.google.com",
    "redirector.gvt1.com",
    "optimizationguide-pa.googleapis.com",
    "content-autofill.googleapis.com",
    "safebrowsingohttpgateway.googleapis.com",
}


def _host(request: str) -> str:
    """'CONNECT host:443' or 'GET http://host/path' -> host."""
    target = request.split(" ", 1)[1]
    target = target.split("://", 1)[-1]
    return target.split("/", 1)[0].rsplit(":", 1)[0].lower()


# -- Chromium -------------------------------------------------------------------------------------


class RefusingProxy:
    """The only proxy Chromium may use: it records every request and answers none of them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                seen.append(f"{self.command} {self.path}")
                self.send_error(403)

            do_GET = do_POST = do_HEAD = do_CONNECT = _refuse  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page_requests(self) -> list[str]:
        """What was asked for, less Chromium's own calls home (updates, sign-in, time) that no page makes."""
        return [r for r in self.seen if _host(r) not in CHROMIUM_OWN_HOSTS]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """Headless Chromium whose every network request goes to a proxy that refuses (and records) it.

    One run per view: the page's script runs (virtual time), then the DOM is printed and, when
    asked, a screenshot kept. The conventions of the Jaeger UI tests (tests/viewing/browser.py): MODULETRACE_CHROMIUM
    names the binary, MODULETRACE_REQUIRE_PEERS=1 turns a missing one into a failure, a hung
    browser is killed with its children.
    """

    def __init__(self, proxy: RefusingProxy, profile: Path) -> None:
        self.proxy = proxy
        self.base = [
            chromium(),
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            "--proxy-bypass-list=<-loopback>",  # even 127.0.0.1 goes to the proxy
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--virtual-time-budget=5000",
        ]
        if os.geteuid() == 0:
            self.base.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox

    def open(self, page: Path, fragment: str = "", screenshot: Path | None = None, size: str = "1280,2600") -> str:
        """The rendered DOM of ``page`` (a file) at ``fragment``; a screenshot kept at ``screenshot``."""
        args = [*self.base, f"--window-size={size}", "--dump-dom"]
        if screenshot is not None:
            args.append(f"--screenshot={screenshot}")
        process = subprocess.Popen(
            [*args, page.resolve().as_uri() + fragment],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            dom, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        assert process.returncode == 0, err[-2000:]
        if screenshot is not None:
            assert screenshot.stat().st_size > 40_000, f"{screenshot} looks blank"  # an empty page is ~10 kB
            print(f"screenshot: {screenshot}")
        return dom


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    proxy = RefusingProxy()
    try:
        yield Browser(proxy, tmp_path_factory.mktemp("chromium-profile"))
    finally:
        proxy.close()


# -- reading the rendered DOM ---------------------------------------------------------------------


class Page(HTMLParser):
    """What the rendered DOM shows: the timeline cards (module, margins by stage), links, sources, counts."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.cards: list[dict[str, Any]] = []
        self.urls: list[tuple[str, str, str]] = []  # tag, attribute, value
        self.counts: dict[str, int] = {}
        self.body: dict[str, str | None] = {}
        self.sections: dict[str, dict[str, str | None]] = {}
        self._text_into: tuple[str, Any] | None = None
        self._section: str | None = None
        self._stack: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("src", "href", "action", "poster", "data", "xlink:href"):
            if a.get(name):
                self.urls.append((tag, name, str(a[name])))
        if tag == "body":
            self.body = a
        if tag == "section" and a.get("data-section"):
            self.sections[str(a["data-section"])] = a
            self._section = a["data-section"]
        if tag == "article":
            self.cards.append(
                {
                    "module": a.get("data-module"),
                    "span": a.get("data-load-span"),
                    "section": self._section,
                    "margins": {},
                    "timelines": 0,
                    "bands": 0,
                }
            )
        if tag == "svg" and "timeline" in (a.get("class") or "") and self.cards:
            self.cards[-1]["timelines"] += 1
        if tag == "rect" and "band" in (a.get("class") or "").split() and self.cards:
            self.cards[-1]["bands"] += 1
        if tag == "text" and "margin" in (a.get("class") or "").split() and self.cards:
            self._text_into = ("margin", a.get("data-stage"))
        if a.get("data-count"):
            self._text_into = ("count", a["data-count"])
        if tag == "b" and self._text_into and self._text_into[0] == "count":
            self._text_into = ("count-value", self._text_into[1])

    def handle_data(self, data: str) -> None:
        if self._text_into is None:
            return
        what, key = self._text_into
        if what == "margin":
            match = re.fullmatch(r"margin (-?\d+\.\d{3}) ms", data.strip())
            assert match, data
            self.cards[-1]["margins"][key] = float(match.group(1))
            self._text_into = None
        elif what == "count-value":
            self.counts[key] = int(data.replace(",", ""))
            self._text_into = None


def by_load(page: Page) -> dict[str, dict[str, Any]]:
    return {card["span"]: card for card in page.cards}


def assert_no_network(page: Page, browser: Browser, allowed_links: set[str]) -> None:
    """No URL in the DOM but the trace links, and no request reached the proxy."""
    external = [(tag, name, url) for tag, name, url in page.urls if re.match(r"(?i)^\s*([a-z]+:)?//", url)]
    assert all(tag == "a" and name == "href" and url in allowed_links for tag, name, url in external), external
    assert browser.proxy.page_requests() == [], "the page made network requests"


# -- a large incident, generated ------------------------------------------------------------------


def large_incident(raced: int = RACED_LOADS) -> tuple[RaceReport, DiagnosisReport]:
    """``raced`` races (a fifth across hosts, beyond the skew bound), plus ambiguous loads across hosts,
    stale reads, clean loads and auth failures, 40 ms apart: the report the detector makes of them."""
    spans: list[Span] = []
    total = raced + raced // 10 + raced // 25 + raced // 5
    for i in range(total):
        module, trace, t = f"mod-{i:05d}", format(i + 1, "x"), i * 40.0
        kind = "race" if i < raced else "ambiguous" if i < raced * 1.1 else "stale" if i < raced * 1.14 else "clean"
        remote = kind == "ambiguous" or (kind == "race" and i % 5 == 0)
        spans.append(span("create_start", module, trace, t, t + 20))
        spans.append(span("db_commit", module, trace, t + 2, t + 8))
        spans.append(span("cache_update", module, trace, t + 9, t + 12))
        read_at = {"race": t - 14 - (i % 7), "ambiguous": t + 5, "stale": t + 25, "clean": t + 30}[kind]
        seen = {DATA_FOUND: False, CACHE_HIT: False} if kind == "stale" else {}
        failed = kind in ("race", "stale") and i % 3 == 0 or kind == "clean" and i % 4 == 0
        request_attributes: dict[str, Any] = {}
        if kind == "clean" and failed:
            request_attributes = {HTTP_RESPONSE_STATUS_CODE: 401, ERROR_TYPE: "401"}
        elif failed:
            request_attributes = {ERROR_TYPE: "ModuleNotFound"}
        resource = PROCESS_B if remote else PROCESS_A
        request = span(
            "load_request",
            module,
            trace,
            read_at - 1,
            read_at + 4,
            resource=resource,
            failed=failed,
            attributes=request_attributes,
        )
        spans.append(request)
        spans.append(
            span(
                "load_db_query",
                module,
                trace,
                read_at,
                read_at + 2,
                resource=resource,
                parent=request.span_id,
                attributes=seen,
            )
        )
    diagnoser = Diagnoser(RaceDetector())
    diagnoser.add_all(spans)
    return diagnoser.detector.report(), diagnoser.report()


# -- tests ----------------------------------------------------------------------------------------


def assert_cards_match(page: Page, verdicts: list[dict[str, Any]]) -> None:
    """One card per verdict, each with one timeline whose margins are the JSON's margin_ms."""
    cards = by_load(page)
    assert len(page.cards) == len(verdicts)
    for verdict in verdicts:
        card = cards[verdict["load_span_id"]]
        assert card["module"] == verdict["module_id"]
        assert card["timelines"] == 1
        assert card["margins"] == {k: round(v, 3) for k, v in verdict["margin_ms"].items()}  # shown to the us


def test_the_demo_writes_its_report_and_the_page_shows_every_race_with_the_json_margins(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--dir", str(tmp_path / "demo"), "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0, document["demo"]
    report = Path(document["demo"]["report"])
    assert report.parent == tmp_path / "demo" and report.is_file()

    with capsys.disabled():
        page = Page(browser.open(report, screenshot=tmp_path / "demo.png"))
    assert page.body.get("data-rendered") == "true"  # the script ran to its end
    judged = document["races"] + document["stale_reads"] + document["ambiguous"] + document["clocks_contradicted"]
    assert document["races"], "the demo injects races"
    assert_cards_match(page, judged)
    summary = document["summary"]
    for key in ("loads", "failed_loads", "races", "stale_reads", "ambiguous", "unmatched", "failed_commits"):
        assert page.counts[key] == summary[key], key
    assert page.counts["failed_loads"] == document["diagnosis"]["summary"]["failed_loads"] > 0
    assert_no_network(page, browser, allowed_links=set())


def test_a_large_incident_stays_small_and_every_page_of_races_shows_the_right_timelines(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, diagnosis = large_incident()
    assert len(report.races) == RACED_LOADS and report.ambiguous and report.stale_reads
    document = as_json(report, link=lambda trace: f"https://jaeger.example/trace/{trace}")
    links = {f"https://jaeger.example/trace/{d.trace_id}" for d in diagnosis.diagnoses}
    links |= {v["trace_url"] for v in document["races"] + document["ambiguous"] + document["stale_reads"]}
    path = write_html(
        tmp_path / "large.html", report, diagnosis, link=lambda trace: f"https://jaeger.example/trace/{trace}"
    )
    size = path.stat().st_size
    with capsys.disabled():
        print(f"\nlarge incident: {RACED_LOADS} raced loads, {report.loads} loads -> {size / 1e6:.2f} MB ({path})")
    assert size < 1_000 * report.loads  # well under a kilobyte a load: data only, drawn a page at a time

    with capsys.disabled():
        first = Page(browser.open(path, screenshot=tmp_path / "large-first-page.png"))
    assert first.sections["races"]["data-pages"] == str(RACED_LOADS // 20)
    assert_cards_match(first, [*document["races"][:20], *document["stale_reads"][:20], *document["ambiguous"][:20]])
    assert_no_network(first, browser, allowed_links=links)
    trace_links = {url for tag, _, url in first.urls if tag == "a" and not url.startswith("#")}
    shown = document["races"][:20] + document["stale_reads"][:20] + document["ambiguous"][:20]
    assert {v["trace_url"] for v in shown} <= trace_links <= links  # each card links to its trace
    # the clock bound is drawn as a band exactly when the comparison crossed clocks
    for verdict in document["races"][:20] + document["ambiguous"][:20]:
        crossed = any(e["offset_bound_ms"] for e in verdict["evidence"])
        assert (by_load(first)[verdict["load_span_id"]]["bands"] > 0) == crossed

    assert first.body["data-shown"] == "races"  # the first section with something in it
    last = Page(browser.open(path, f"#races/{RACED_LOADS // 20}"))
    assert last.sections["races"]["data-page"] == str(RACED_LOADS // 20)
    assert last.body["data-shown"] == "races" and "hidden" in last.sections["ambiguous"]
    assert_cards_match(last, [*document["races"][-20:], *document["stale_reads"][:20], *document["ambiguous"][:20]])
    with capsys.disabled():
        ambiguous = browser.open(path, "#ambiguous/3", tmp_path / "large-ambiguous.png", size="1280,1500")
        browser.open(path, "#failed_loads/2", tmp_path / "large-failed-loads.png", size="1280,1500")
    assert Page(ambiguous).body["data-shown"] == "ambiguous"
    # a link to one module's card: the section filtered by module id
    one = Page(browser.open(path, "#races/1/mod-0421"))
    assert [c["module"] for c in one.cards if c["section"] == "races"] == [f"mod-0421{i}" for i in range(10)]


def test_module_ids_and_links_are_data_never_markup(
    browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = [
        "<script>document.body.setAttribute('data-pwned','1')</script>",
        "</script><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">",
        "\u2028<!--",
    ]
    spans: list[Span] = []
    for i, module in enumerate(hostile):
        t = i * 100.0
        spans += [
            span("db_commit", module, f"e{i}", t + 2, t + 8),
            span("cache_update", module, f"e{i}", t + 9, t + 12),
        ]
        request = span("load_request", module, f"e{i}", t - 20, t - 10, failed=True)
        spans += [request, span("load_db_query", module, f"e{i}", t - 19, t - 17, parent=request.span_id)]
    diagnoser = Diagnoser(RaceDetector())
    diagnoser.add_all(spans)
    report = diagnoser.detector.report()
    path = write_html(tmp_path / "hostile.html", report, diagnoser.report(), link=lambda trace: "javascript:alert(1)")
    text = path.read_text(encoding="utf-8")
    assert "<script>document" not in text and "</script><img" not in text and "javascript:" not in text

    with capsys.disabled():
        page = Page(browser.open(path, screenshot=tmp_path / "hostile.png", size="1280,1400"))
    assert page.body.get("data-rendered") == "true" and "data-pwned" not in page.body
    assert sorted(card["module"] for card in page.cards) == sorted(hostile)  # shown as text, whole
    assert [url for url in page.urls if url[1] == "src"] == []
    assert_no_network(page, browser, allowed_links=set())


def test_races_with_output_writes_the_page_and_prints_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.test_races_command import racing_file

    spans = racing_file(tmp_path)
    out = tmp_path / "incident.html"
    assert main(["races", "--file", str(spans), "--output", str(out)]) == 1
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '"m":"m-1"' in text
    assert main(["diagnose", "--file", str(spans), "--format", "html"]) in (0, 1)
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")
    assert main(["races", "--file", str(spans), "--format", "json", "--output", str(out)]) == 2
    assert "--output" in capsys.readouterr().err


def test_the_network_check_sees_a_page_that_fetches(browser: Browser, tmp_path: Path) -> None:
    # The control for assert_no_network: a page with one external image is caught, by the DOM and by the proxy.
    page = tmp_path / "fetching.html"
    page.write_text('<!DOCTYPE html><body><img src="http://cdn.example.invalid/logo.png"></body>', encoding="utf-8")
    seen = Page(browser.open(page))
    assert browser.proxy.page_requests() == ["GET http://cdn.example.invalid/logo.png"]
    browser.proxy.seen.clear()
    with pytest.raises(AssertionError):
        assert_no_network(seen, browser, allowed_links=set())


def test_the_embedded_json_cannot_close_its_script_element() -> None:
    report = RaceReport(loads=1, modules=1, clean=1)
    text = render_html(report, DiagnosisReport(loads=1), partial=["</script><b>partial</b>"])
    body = text.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in body and ">" not in body and "&" not in body
    assert "<b>partial</b>" not in text and "&lt;/script&gt;&lt;b&gt;partial&lt;/b&gt;" in text
    # every script and style is allowed by its hash, nothing else: no fetch, no inline handler
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text)
    assert policy.startswith("default-src &#x27;none&#x27;;") and "unsafe" not in policy
