"""A crawler: links found on fetched pages go back to the frontier, a cycle in the graph.

Run it::

    minigun run examples/crawler.py
    minigun run examples/crawler.py -p max_pages=10 --result-file result.json

It shows a graph with a back edge: ``frontier -> fetch -> parse -> save``, and ``parse``
routes every link it finds back upstream with ``out.to("frontier")``. The frontier is
the only stage that decides what to fetch, on one thread, so its ``visited`` set needs
no lock and no page is fetched twice; it stops admitting pages once ``max_pages`` were
admitted. The run ends by itself when no item is in flight anywhere, cycle included:
there is no "crawl finished" signal to write.

The site is served by the example itself, on 127.0.0.1 and a free port, from a thread
started in ``@mg.before_run`` and shut down in ``@mg.after_run``: nothing leaves the
machine, and the one link to another host is dropped by the frontier. The server
counts the requests it answers per path, so the last line shows what it really saw.
Pages go to ``crawl.sqlite`` (``db``), a fresh table each run, with ``url`` as its
primary key: a page saved twice would fail the run.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urldefrag, urljoin

import minigun as mg

#: How many pages the served site has: page 0 links to pages 1 and 2, page n to 2n+1
#: and 2n+2 (a binary tree), and every page links back home and to page n+1, so the
#: crawler meets most links more than once.
SITE_PAGES = 40


def site_page(number: int) -> str:
    """The HTML of page ``number``: a title and its links (some repeated, one off-site)."""
    targets = [0, number + 1, 2 * number + 1, 2 * number + 2]
    links = "".join(f'<a href="/page/{t}#top">page {t}</a> ' for t in targets if t < SITE_PAGES)
    links += '<a href="http://example.com/elsewhere">off-site</a>'
    return f"<html><head><title>Page {number}</title></head><body>{links}</body></html>"


class _Site(ThreadingHTTPServer):
    """The site's server, holding the count of requests per path for this run."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SiteHandler)  # port 0: any free port
        self.hits: collections.Counter[str] = collections.Counter()
        self.hits_lock = threading.Lock()


class _SiteHandler(BaseHTTPRequestHandler):
    """Serves ``/page/N`` from :func:`site_page` and counts every request by path."""

    def do_GET(self) -> None:
        site = cast(_Site, self.server)
        with site.hits_lock:
            site.hits[self.path] += 1
        _, _, number = self.path.rpartition("/")
        if not self.path.startswith("/page/") or not number.isdigit():
            self.send_error(404)
            return
        if int(number) >= SITE_PAGES:
            self.send_error(404)
            return
        body = site_page(int(number)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one access line per page would bury the result line."""


class _LinkParser(HTMLParser):
    """Collects ``href`` values and the ``<title>`` text of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_title = tag == "title"
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


class Crawler(mg.Pipeline):
    """Crawl the example's own site from its home page, at most ``max_pages`` pages."""

    def __init__(self, max_pages: int = 25, db: str = "crawl.sqlite") -> None:
        self.max_pages = max_pages
        self.db_path = db
        self.visited: set[str] = set()

    @mg.before_run
    def start_site(self) -> None:
        """Serve the site on a free loopback port for this run only."""
        self.server = _Site()
        self.hits = self.server.hits
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.server_thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.server_thread.start()
        self.db = sqlite3.connect(self.db_path, check_same_thread=False)
        self.db.execute("DROP TABLE IF EXISTS pages")
        self.db.execute("CREATE TABLE pages (url TEXT PRIMARY KEY, title TEXT, links INTEGER)")

    @mg.producer
    def seeds(self) -> Iterator[str]:
        yield f"{self.base}/page/0"

    @mg.processor
    def frontier(self, url: str) -> str | None:
        """Admit each on-site URL once, up to ``max_pages``; None drops the rest.

        One thread (the default), so the set is only ever touched here, in order.
        """
        url, _fragment = urldefrag(url)
        if not url.startswith(self.base + "/") or url in self.visited:
            return None
        if len(self.visited) >= self.max_pages:
            return None
        self.visited.add(url)
        return url

    @mg.processor(threads=4, retries=1, timeout=10)
    def fetch(self, url: str) -> tuple[str, str]:
        """Download a page (I/O-bound: four at a time)."""
        with urllib.request.urlopen(url, timeout=5) as response:
            return url, response.read().decode()

    @mg.processor
    def parse(self, page: tuple[str, str], out: mg.Out) -> None:
        """Send every link back to the frontier, and the page on to be saved."""
        url, html = page
        parser = _LinkParser()
        parser.feed(html)
        for link in parser.links:
            out.to("frontier").emit(urljoin(url, link))
        out.emit((url, parser.title, len(parser.links)))

    @mg.consumer
    def save(self, row: tuple[str, str, int]) -> None:
        with self.db:
            self.db.execute("INSERT INTO pages VALUES (?, ?, ?)", row)

    @mg.after_run
    def report(self, result: mg.RunResult) -> None:
        """Stop the site, then say what was crawled and what the server saw."""
        self.server.shutdown()
        self.server.server_close()
        self.server_thread.join()
        (saved,) = self.db.execute("SELECT COUNT(*) FROM pages").fetchone()
        self.db.close()
        twice = sum(1 for n in self.hits.values() if n > 1)
        print(
            f"crawled {saved} pages (limit {self.max_pages}, site {SITE_PAGES}) into"
            f" {self.db_path}; server answered {self.hits.total()} requests for"
            f" {len(self.hits)} distinct pages, {twice} fetched twice"
        )
