"""The HTML a reader opens, opened as they open it: from disk, in a real browser (headless
Chromium), with nothing failing to load and no error on the console.

Chromium is driven through chromedriver's WebDriver protocol, spoken here with the standard
library: it gives what Selenium's `driver.get_log("browser")` gives (console errors, uncaught
exceptions, failed loads, each with its level) and Chrome's own network log (every request the
page made). Chromium's command line (`--enable-logging=stderr --v=1`) logs console messages
without their level and no failed file loads at all, so it cannot tell a broken page from a
sound one; and Selenium would bring six packages that constraints.txt does not pin.

Without Chromium or chromedriver (Debian: `apt-get install chromium chromium-driver`, which
.ci/run does) these tests are skipped, saying so.
"""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import RUN_SAMPLE_DIR

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STARTUP_SECONDS = 60  # chromedriver and a first Chromium on two busy cores take several seconds

# What the page reports back once loaded: where it is (an error page has another URL), its
# images that did not decode (a broken data: URI logs nothing), where each link leads, with
# whether an in-page anchor (#id) exists, and inline SVG's <use> of a missing id (Matplotlib's
# markers are <use>s: two figures sharing ids, or one losing its <defs>, draw nothing, silently).
INSPECT = """
return {
  url: document.URL,
  title: document.title,
  text: document.body ? document.body.innerText.length : 0,
  images: Array.from(document.images)
    .filter(image => !(image.complete && image.naturalWidth > 0))
    .map(image => image.src.slice(0, 100)),
  links: Array.from(document.querySelectorAll("a[href]")).map(link => ({
    href: link.href,
    here: link.href.split("#")[0] === document.URL.split("#")[0],
    target: link.hash ? document.getElementById(decodeURIComponent(link.hash.slice(1))) !== null
                      : true,
  })),
  uses: Array.from(document.querySelectorAll("use"))
    .map(use => use.href.baseVal)
    .filter(ref => ref.startsWith("#") && document.getElementById(ref.slice(1)) === null),
};
"""


class Browser:
    """One headless Chromium for the module, through chromedriver: `check(path)` loads a file and
    says what went wrong, one line each."""

    def __init__(self, binary: str, driver: str, log: Path) -> None:
        with socket.socket() as probe:  # a free port for chromedriver
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.log = log.open("wb")
        self.driver = subprocess.Popen(
            [driver, f"--port={port}"], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.session = None
        try:
            self._start(binary, driver, log)
        except BaseException:
            self.close()  # no chromedriver left behind by a test that could not start it
            raise

    def _start(self, binary: str, driver: str, log: Path) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._ready():
            if time.monotonic() > deadline or self.driver.poll() is not None:
                raise RuntimeError(f"{driver} did not start: see {log}")
            time.sleep(0.1)
        options = {
            "binary": binary,
            # --no-sandbox: Chromium refuses to start as root (CI containers) with its sandbox,
            # which guards against hostile web pages; these are our own files, read offline.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        }
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }
        started = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = started["sessionId"]
        self.version = f"Chromium {started['capabilities'].get('browserVersion')}"
        self._call("POST", self._path("timeouts"), {"pageLoad": 60_000, "script": 30_000})

    def check(self, page: Path) -> list[str]:
        """Load `page` from disk; one line per problem: a console error or uncaught exception,
        a failed load, an image that did not decode, anything fetched (the pages are
        self-contained), a local link to a file that does not exist, an anchor with no target."""
        self._log("browser")  # empties both logs of what the page before left
        self._log("performance")
        url = page.resolve().as_uri()
        self._call("POST", self._path("url"), {"url": url})
        seen = self._call("POST", self._path("execute/sync"), {"script": INSPECT, "args": []})
        problems = [f"not shown: the browser is at {seen['url']}"] if seen["url"] != url else []
        if not seen["text"]:
            problems.append("the page shows no text")
        problems += [
            f"console {entry['level']} ({entry['source']}): {entry['message']}"
            for entry in self._log("browser")
            if entry["level"] == "SEVERE"
        ]
        problems += [f"image not shown: {source}" for source in seen["images"]]
        problems += [f"SVG <use> of a missing id: {ref}" for ref in sorted(set(seen["uses"]))]
        problems += [
            f"fetched {request}"
            for request in self._requests()
            if request != url and not request.startswith("data:")  # inside the page itself
        ]
        for link in seen["links"]:
            problems += self._link_problem(link)
        return problems

    @staticmethod
    def _link_problem(link: dict) -> list[str]:
        parts = urlsplit(link["href"])
        if link["here"]:
            return [] if link["target"] else [f"anchor with no target: {link['href']}"]
        if parts.scheme != "file":  # http(s), mailto: not the browser's job to check here
            return []
        path = Path(unquote(parts.path))
        return [] if path.exists() else [f"link to a missing file: {path}"]

    def _requests(self) -> list[str]:
        """Every URL the page asked for (Chrome's network log), its own and data: URIs too."""
        urls = []
        for entry in self._log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def _log(self, kind: str) -> list[dict]:
        return self._call("POST", self._path("se/log"), {"type": kind})

    def _path(self, command: str) -> str:
        return f"/session/{self.session}/{command}"

    def _ready(self) -> bool:
        try:
            return bool(self._call("GET", "/status").get("ready"))
        except OSError:
            return False

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:  # WebDriver's errors come as JSON bodies
            raise RuntimeError(f"{method} {path}: {error.read()[:2000]!r}") from None

    def close(self) -> None:
        try:
            if self.session is not None:
                self._call("DELETE", f"/session/{self.session}")  # closes Chromium
        finally:
            self.driver.terminate()
            try:
                self.driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait()
            self.log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    # GitHub's Ubuntu images keep the driver of their Google Chrome in $CHROMEWEBDRIVER
    driver = shutil.which("chromedriver") or shutil.which(
        "chromedriver", path=os.environ.get("CHROMEWEBDRIVER", "")
    )
    if binary is None or driver is None:
        missing = " and ".join(
            name
            for name, found in (("Chromium", binary), ("chromedriver", driver))
            if found is None
        )
        pytest.skip(
            f"{missing} not installed: `apt-get install chromium chromium-driver` (.ci/run does)"
        )
    started = Browser(binary, driver, tmp_path_factory.mktemp("chromedriver") / "driver.log")
    yield started
    started.close()


def test_the_browser_sees_what_breaks_a_page(browser, tmp_path):
    """The check itself: each kind of problem on a page made to have it is named."""
    page = tmp_path / "broken.html"
    page.write_text(
        """<!doctype html><html><head><meta charset="utf-8"><title>broken</title>
        <link rel="stylesheet" href="missing.css"></head><body><p id="here">text</p>
        <img src="missing.png"><img src="data:image/png;base64,AAAA">
        <a href="#here">fine</a> <a href="#nowhere">anchor</a> <a href="gone.pdf">file</a>
        <svg><defs><path id="dot" d="M0 0h1v1z"/></defs><use href="#dot"/><use href="#lost"/></svg>
        <script>console.error("on purpose"); notDefined();</script></body></html>""",
        encoding="utf-8",
    )
    problems = "\n".join(browser.check(page))
    for expected in (
        "missing.css - Failed to load resource: net::ERR_FILE_NOT_FOUND",
        "missing.png - Failed to load resource",
        '"on purpose"',
        "Uncaught ReferenceError: notDefined is not defined",
        "image not shown: data:image/png;base64,AAAA",
        f"fetched {(tmp_path / 'missing.css').as_uri()}",
        "anchor with no target: ",
        f"link to a missing file: {tmp_path / 'gone.pdf'}",
        "SVG <use> of a missing id: #lost",
    ):
        assert expected in problems
    assert "#here" not in problems and "#dot" not in problems
    assert browser.check(tmp_path / "absent.html")[0].startswith("not shown: the browser is at")


@pytest.mark.slow
def test_the_report_opens_from_disk_without_errors(browser, quick_build):
    assert browser.check(quick_build.run_dir / "report.html") == [], browser.version


def hand_made_reports(out: Path, latest: bool = True) -> Path:
    """Runs of every state the index shows, from the sample metrics of a quick build: finished,
    regressed, failed, killed while running, and one with no run.json."""
    states = [
        ("20260101-090000-quick", {"status": "finished", "regressions": []}),
        ("20260101-100000-quick", {"status": "finished", "regressions": ["psnr_db"]}),
        ("20260101-110000-quick", {"status": "failed", "error": {"stage": "pdf", "message": "x"}}),
        ("20260101-120000-quick", {"status": "running", "pid": 2**22 + 1}),
    ]
    for name, values in states:
        run_dir = out / name
        run_dir.mkdir(parents=True)
        for sample in ("metrics.json", "config.json"):
            shutil.copy(RUN_SAMPLE_DIR / sample, run_dir / sample)
        stamp = f"2026-01-01T{name[9:11]}:00:00+00:00"
        record = {"run_id": name, "command": "build", "profile": "quick", "started": stamp}
        if values["status"] != "running":
            record["finished"] = stamp
        (run_dir / "run.json").write_text(json.dumps({**record, **values}), encoding="utf-8")
    (out / "20260101-130000-quick").mkdir()  # killed before its run.json
    if latest:
        (out / "latest").symlink_to("20260101-100000-quick", target_is_directory=True)
    return out


def test_the_index_of_runs_in_every_state_opens_without_errors(browser, tmp_path):
    from pipeline import index

    out = hand_made_reports(tmp_path / "reports")
    page = index.write(out)
    assert page == out / "index.html"
    assert browser.check(page) == [], browser.version


@pytest.mark.slow
def test_the_index_of_a_real_build_opens_without_errors(browser, quick_reports_copy):
    """The real build's links (report, PDF, answer key, handout) beside runs in every state."""
    from pipeline import index

    hand_made_reports(quick_reports_copy, latest=False)
    assert browser.check(index.write(quick_reports_copy)) == [], browser.version
