"""The web console in a real browser: headless Chromium (Playwright, Debian's binary)
against a real `carrier serve` subprocess on 127.0.0.1, the fake model server, and the
fake FTP / HTTP / Graph servers for the Instagram form.

One browser and one server for the module (each test opens its own tab, so its own
sessionStorage, and talks in its own room); the restart test runs last and brings the
server back on the same port.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.clients.api.console.browser import launch, require_chromium, screenshot
from tests.clients.instagram.helpers import make_image
from tests.support.api_server import ServeProcess, serve_env, start_serve, write_character
from tests.support.instagram_servers import (
    FTP_PASSWORD,
    FTP_USER,
    FakeGraph,
    run_fake_graph,
    serve_directory,
    start_ftp,
)
from tests.support.model_server import ModelServerProcess, Reply, start_server_process

pytestmark = [pytest.mark.slow, pytest.mark.service]

AGENT = "Carrier"
# No fact evaluator: each scripted model reply goes to the turn it is for. The unknown
# key is there for the Character page's validation warning.
CHARACTER_EXTRA = "settings:\n  fact_interval: 1000000\nfavourite_colour: teal\n"
XSS = (
    '<script>window.__xss = "script"</script> '
    '<img src="x" onerror="window.__xss = \'img\'"> '
    "[click me](javascript:window.__xss='link') "
    "<a href=\"javascript:window.__xss='a'\">raw link</a>"
)


@dataclass
class Stack:
    tmp: Path
    model: ModelServerProcess
    graph: FakeGraph
    env: dict[str, str]
    character: Path
    serve: ServeProcess
    port: int

    @property
    def url(self) -> str:
        return self.serve.url

    def rest(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.serve.headers(self.key), timeout=30)

    key: str = ""


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("console")
    root = tmp / "ftp-root"
    root.mkdir()
    with contextlib.ExitStack() as stack:
        ftp = stack.enter_context(contextlib.contextmanager(start_ftp)(root, True, tmp))
        web = stack.enter_context(contextlib.contextmanager(serve_directory)(root))
        graph = stack.enter_context(contextlib.contextmanager(run_fake_graph)())
        model = start_server_process()
        stack.callback(_stop, model.process)
        env = {
            "INSTAGRAM_ACCOUNT_ID": graph.account_id,
            "INSTAGRAM_ACCESS_TOKEN": graph.token,
            "CARRIER_GRAPH_API_BASE": graph.url,
            "FTP_SERVER": f"{ftp.host}:{ftp.port}",
            "FTP_USERNAME": FTP_USER,
            "FTP_PASSWORD": FTP_PASSWORD,
            "FTP_DIRECTORY": "/",
            "HTTP_SERVER": web.url,
            "SSL_CERT_FILE": str(ftp.ca_file),
            "CARRIER_INSTAGRAM_POLL_INTERVAL": "0.02",
            "CARRIER_INSTAGRAM_RETRY_DELAY": "0.02",
            "CARRIER_API_RATE_LIMIT": "0",
        }
        character = write_character(tmp / "carrier.yaml", AGENT, CHARACTER_EXTRA)
        serve = start_serve(tmp / "home", model.url, characters=[character], env=env)
        assert serve.key, serve.stdout
        port = int(serve.url.rsplit(":", 1)[1])
        built = Stack(tmp, model, graph, env, character, serve, port, key=serve.key)
        try:
            yield built
        finally:
            built.serve.terminate()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    yield from launch(stack.tmp)


@pytest.fixture(autouse=True)
def unused_replies_are_dropped(stack: Stack) -> Iterator[None]:
    """A scripted reply a test did not use (it failed before its turn) would answer the
    next test's turn instead: drop it, so one failure reads as one."""
    yield
    stack.model.reset()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab that records dialogs and page errors (an XSS would show in either)."""
    tab = browser.new_page()
    tab.dialogs = []
    tab.errors = []

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    try:
        yield tab
    finally:
        tab.close()


def sign_in(page: Any, stack: Stack, key: str | None = None, hash_: str = "") -> None:
    page.goto(f"{stack.url}/console/{hash_}")
    page.fill("#key", key or stack.key)
    page.press("#key", "Enter")
    page.wait_for_selector("#nav:not([hidden])")


def open_room(page: Any, stack: Stack, room: str) -> None:
    sign_in(page, stack, hash_=f"#/chat/{AGENT}/{room}")
    # The server has confirmed the subscription: the room's events reach the page.
    page.wait_for_selector("#log[data-state=live]")


def hold_first(page: Any, url: re.Pattern[str]) -> list[Any]:
    """Hold back the page's first request to `url` (later ones go through); the list gets
    its route, to answer with `continue_()` when the test is ready."""
    held: list[Any] = []

    def handle(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(url, handle)
    return held


def wait_held(page: Any, held: list[Any], what: str) -> Any:
    for _ in range(100):
        if held:
            return held[0]
        page.wait_for_timeout(50)
    raise AssertionError(f"the page did not ask for {what}")


def reply_xml(text: str) -> str:
    return (
        "<response><thought>t</thought><actions>REPLY</actions>"
        f"<text>{html.escape(text, quote=False)}</text></response>"
    )


def cli(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "carrier_cli", *args],
        cwd=stack.tmp,
        env=serve_env(stack.serve.home, stack.model.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


FIRST_PAINT = "() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? 1e9"
ASSET_BYTES = (
    "() => performance.getEntriesByType('resource').concat(performance.getEntriesByType("
    "'navigation')).reduce((n, e) => n + (e.decodedBodySize || 0), 0)"
)


# --- tests --------------------------------------------------------------------------------
def test_the_root_redirects_to_the_console_and_first_paint_is_fast(page: Any, stack: Stack) -> None:
    response = page.goto(stack.url + "/")
    assert response is not None and response.url.endswith("/console/")
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    page.wait_for_selector("#key")
    # A reload measures the server and the page, not the browser's cold start.
    paints = []
    for _ in range(3):
        page.reload()
        page.wait_for_selector("#key")
        paints.append(page.evaluate(FIRST_PAINT))
    paint = sorted(paints)[1]
    print(f"first contentful paint (median of 3 reloads): {paint:.0f} ms; {paints}")
    # The budget is 200 ms (measured 110-145 ms here); the bound leaves room for
    # a loaded CI machine sharing its cores.
    assert paint < 600, f"first contentful paint took {paint:.0f} ms"
    transferred = page.evaluate(ASSET_BYTES)
    print(f"assets decoded: {transferred} bytes")
    assert transferred < 300_000
    assert page.get_attribute("#key", "type") == "password"
    screenshot(page, "signin", stack.tmp)


def test_a_wrong_key_and_a_read_only_key_are_explained(page: Any, stack: Stack) -> None:
    page.goto(stack.url + "/console/")
    page.fill("#key", "crr_" + "x" * 43)
    page.press("#key", "Enter")
    error = page.wait_for_selector("#signin-error:not([hidden])")
    assert "not valid" in error.inner_text()
    assert page.evaluate("() => sessionStorage.getItem('carrier.key')") is None
    reader = cli(stack, "api-keys", "create", "console-reader", "--scope", "read").splitlines()[-1]
    page.fill("#key", reader)
    page.press("#key", "Enter")
    page.wait_for_selector("#message")
    assert page.is_disabled("#message")
    assert "read-only" in page.inner_text("main")
    # the key lives in this tab's sessionStorage, and nowhere in the URL or a cookie
    assert page.evaluate("() => sessionStorage.getItem('carrier.key')") == reader
    assert reader not in page.url and not page.context.cookies()


def test_a_reply_streams_token_by_token_and_opens_in_the_inspector(page: Any, stack: Stack) -> None:
    room = f"stream-{uuid.uuid4().hex[:6]}"
    open_room(page, stack, room)
    words = ["The ", "sea ", "is ", "**wide** ", "and ", "deep."]
    chunks = ["<response><thought>Slowly.</thought><actions>REPLY</actions><text>"]
    chunks += [*words, "</text></response>"]
    stack.model.push(Reply(text="".join(chunks), chunks=chunks, chunk_delay=0.4))
    page.fill("#message", "Tell me about")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("the sea.")
    assert page.input_value("#message") == "Tell me about\nthe sea."
    page.keyboard.press("Enter")
    page.wait_for_selector("#thinking:has-text('Carrier is')")
    partial = page.wait_for_selector(".msg.streaming")
    text = partial.inner_text()
    assert "deep." not in text  # seen mid-stream
    page.wait_for_selector(".msg:not(.streaming) strong:has-text('wide')")
    reply = page.locator(".msg", has_text="deep.").last
    assert reply.locator(".body strong").inner_text() == "wide"  # Markdown rendered
    assert page.locator(".msg.mine .body").inner_text() == "Tell me about\nthe sea."
    screenshot(page, "chat", stack.tmp)
    reply.locator(".inspect").click()
    page.wait_for_selector(".call")
    prompt = page.locator(".call pre.prompt").first.inner_text()
    assert "the sea." in prompt
    assert "deep." in page.locator(".call pre.output").first.inner_text()
    assert "in ·" in page.inner_text("#turn-tokens")
    screenshot(page, "inspector", stack.tmp)


def test_a_message_from_another_client_appears_live(page: Any, stack: Stack) -> None:
    room = f"live-{uuid.uuid4().hex[:6]}"
    open_room(page, stack, room)
    with stack.rest() as rest:
        sent = rest.post(
            f"/v1/agents/{AGENT}/messages",
            json={"room": room, "text": "Hello from curl", "sender": {"id": "u9", "name": "Ada"}},
        )
    assert sent.status_code == 200, sent.text
    page.wait_for_selector(".msg:has-text('Hello from curl') strong:has-text('Ada')")
    page.wait_for_selector(".msg:has-text('Echo: Hello from curl')")


def test_enter_while_the_history_is_still_loading_sends_the_message(
    page: Any, stack: Stack
) -> None:
    """The composer is on screen before the room's history has arrived; an operator who
    types and presses Enter in that moment gets a sent message, not a new line (a loaded
    CI machine once took long enough over the history that a test's Enter was lost)."""
    room = f"early-{uuid.uuid4().hex[:6]}"
    held = hold_first(page, re.compile(rf"/rooms/{room}/messages"))
    sign_in(page, stack, hash_=f"#/chat/{AGENT}/{room}")
    history = wait_held(page, held, "the room's history")  # answered once Enter is pressed
    page.fill("#message", "sent early")
    page.press("#message", "Enter")
    page.wait_for_timeout(200)
    assert page.input_value("#message") != "sent early\n"  # Enter did not add a line
    history.continue_()
    page.wait_for_selector(".msg:has-text('Echo: sent early')")
    assert page.locator(".msg.mine .body").all_inner_texts() == ["sent early"]
    assert page.input_value("#message") == ""


def test_older_messages_load_on_demand(page: Any, stack: Stack) -> None:
    room = f"long-{uuid.uuid4().hex[:6]}"
    with stack.rest() as rest:
        for n in range(26):  # 52 messages with the replies: more than one page of 50
            sent = rest.post(f"/v1/agents/{AGENT}/messages", json={"room": room, "text": f"n{n}"})
            assert sent.status_code == 200, sent.text
    open_room(page, stack, room)
    assert page.locator(".msg").count() == 50
    assert page.locator(".msg .body", has_text="n0").count() == 0
    page.click("#older")
    page.wait_for_selector(".msg .body:text-is('n0')")
    texts = page.locator(".msg .body").all_inner_texts()
    assert len(texts) == 52 and texts[:2] == ["n0", "Echo: n0"]
    assert texts[-1] == "Echo: n25" and page.locator("#older").count() == 0


def test_a_failed_turn_is_shown_inline_with_its_hint(page: Any, stack: Stack) -> None:
    room = f"fail-{uuid.uuid4().hex[:6]}"
    open_room(page, stack, room)
    stack.model.push(Reply(status=500, error_message="the model server is down"))
    page.fill("#message", "are you there?")
    page.press("#message", "Enter")
    error = page.wait_for_selector("#log .error")
    assert error.inner_text().strip()
    assert error.query_selector(".muted") is not None  # the hint, on its own line
    page.wait_for_function("() => document.querySelector('#thinking').textContent === ''")
    page.fill("#message", "and now?")  # the room still works
    page.press("#message", "Enter")
    page.wait_for_selector(".msg:has-text('Echo: and now?')")


def test_markup_in_a_reply_a_message_or_a_memory_runs_nothing(page: Any, stack: Stack) -> None:
    room = f"xss-{uuid.uuid4().hex[:6]}"
    open_room(page, stack, room)
    stack.model.push(Reply(text=reply_xml("Here: " + XSS)))
    page.fill("#message", "payload " + XSS)
    page.press("#message", "Enter")
    page.wait_for_selector(".msg:has-text('Here:') a:has-text('click me')")
    time.sleep(0.3)
    # the user's own text is text: the markup shows, escaped
    assert "<script>" in page.locator(".msg.mine .body").inner_text()
    reply = page.locator(".msg", has_text="Here:").last
    assert reply.locator("script, img, [onerror]").count() == 0
    hrefs = reply.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert not any(h and h.strip().lower().startswith("javascript:") for h in hrefs), hrefs
    for link in reply.locator("a").all():
        link.click(modifiers=["Shift"], no_wait_after=True)
    # a memory with the same payload, listed on the Memory page
    with stack.rest() as rest:
        added = rest.post(f"/v1/agents/{AGENT}/memories", json={"kind": "fact", "text": XSS})
    assert added.status_code == 201, added.text
    page.click("nav a[data-page=memory]")
    page.fill("#mem-q", "window xss script")
    page.press("#mem-q", "Enter")
    page.wait_for_selector("#memory-results .hits")
    assert "<script>" in page.inner_text("#memory-results")
    assert page.locator("#memory-results img, #memory-results script").count() == 0
    time.sleep(0.3)
    assert page.evaluate("() => window.__xss") is None
    assert page.dialogs == [] and page.errors == []


def test_a_listing_that_answers_late_does_not_replace_the_search_hits(
    page: Any, stack: Stack
) -> None:
    """The memory page lists the newest memories when it opens; an operator who searches
    before that listing arrives keeps the hits with their scores."""
    with stack.rest() as rest:
        added = rest.post(
            f"/v1/agents/{AGENT}/memories",
            json={"kind": "fact", "text": "Ada keeps bees on the roof.", "sender": "u7"},
        ).json()
    memory_id = added["memory"]["id"]
    # the page's first listing, held back until the search has answered
    held = hold_first(page, re.compile(r"/memories\?"))
    sign_in(page, stack, hash_="#/memory")
    listing = wait_held(page, held, "the newest memories")
    page.fill("#mem-q", "bees")
    page.press("#mem-q", "Enter")
    hit = f"#memory-results li[data-id='{memory_id}'] .score"
    page.wait_for_selector(hit)
    with page.expect_response(re.compile(r"/memories\?")):
        listing.continue_()
    page.wait_for_timeout(300)  # the listing's answer has been handled by the page
    assert page.query_selector(hit) is not None, page.inner_text("#memory-results")
    assert page.errors == []


def test_memory_search_with_scores_and_delete(page: Any, stack: Stack) -> None:
    with stack.rest() as rest:
        added = rest.post(
            f"/v1/agents/{AGENT}/memories",
            json={"kind": "fact", "text": "Ada prefers green tea to coffee.", "sender": "u9"},
        ).json()
        memory_id = added["memory"]["id"]
        sign_in(page, stack, hash_="#/memory")
        page.select_option("#mem-kind", "fact")
        page.fill("#mem-q", "green tea")
        page.press("#mem-q", "Enter")
        hit = page.wait_for_selector(f"#memory-results li[data-id='{memory_id}']")
        score = float(hit.query_selector(".score").inner_text())
        assert -1 <= score <= 1
        assert "entity" in hit.inner_text()  # a fact about a sender
        page.fill("#mem-q", "")
        page.fill("#mem-about", "u9")  # the facts about that sender, newest first
        page.press("#mem-about", "Enter")
        page.wait_for_selector(f"#memory-results li[data-id='{memory_id}']")
        assert page.locator("#memory-results li").count() == 1
        page.fill("#mem-about", "")
        page.fill("#mem-q", "green tea")
        page.press("#mem-q", "Enter")
        hit = page.wait_for_selector(f"#memory-results li[data-id='{memory_id}']")
        screenshot(page, "memory", stack.tmp)
        button = hit.query_selector("button.delete")
        button.click()
        assert "again" in button.inner_text()  # a second press confirms
        button.click()
        page.wait_for_selector(f"#memory-results li[data-id='{memory_id}']", state="detached")
        listed = rest.get(f"/v1/agents/{AGENT}/memories", params={"kind": "fact", "limit": 200})
        assert memory_id not in {m["id"] for m in listed.json()["memories"]}


def test_the_character_page_shows_the_definition_and_its_warnings(page: Any, stack: Stack) -> None:
    sign_in(page, stack, hash_="#/character")
    page.wait_for_selector("#char-warnings")
    text = page.inner_text("main")
    assert "A test character." in text
    assert "favourite_colour" in page.inner_text(".warn")
    screenshot(page, "character", stack.tmp)


def test_the_instagram_form_publishes_through_ftp_and_graph(page: Any, stack: Stack) -> None:
    image = make_image(stack.tmp / "post.jpg", (1080, 1080), fmt="JPEG", color=(40, 90, 160))
    sign_in(page, stack, hash_="#/instagram")
    page.wait_for_selector("#ig-quota .bar")
    page.set_input_files("#ig-file", str(image))
    page.fill("#ig-caption", "Low tide from the console.")
    page.click("#ig-form-title ~ button, form[aria-labelledby=ig-form-title] button")
    page.wait_for_selector("#ig-state:has-text('published')", timeout=30_000)
    assert page.locator("#ig-progress .steps li.done").count() == 6
    page.wait_for_selector("#ig-journal td:has-text('Low tide from the console.')")
    assert stack.graph.published, "the fake Graph API published nothing"
    screenshot(page, "instagram", stack.tmp)


def test_the_usage_page_charts_the_days(page: Any, stack: Stack) -> None:
    sign_in(page, stack, hash_="#/usage")
    page.wait_for_selector("#usage-chart .chart .col span")
    assert AGENT in page.inner_text("#usage-table")
    page.select_option("#usage-only", AGENT)  # the chart of one character
    page.wait_for_selector("#usage-chart .chart .col span")
    page.select_option("#usage-measure", "cost")
    page.wait_for_selector("#usage-chart .chart[aria-label^='cost']")
    page.select_option("#usage-by", "model")
    page.wait_for_selector("#usage-table th:has-text('gpt')")
    screenshot(page, "usage", stack.tmp)


def test_the_chat_works_at_360_pixels(page: Any, stack: Stack) -> None:
    page.set_viewport_size({"width": 360, "height": 720})
    room = f"narrow-{uuid.uuid4().hex[:6]}"
    open_room(page, stack, room)
    page.fill("#message", "small screen")
    page.press("#message", "Enter")
    page.wait_for_selector(".msg:has-text('Echo: small screen')")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways ({width} px)"
    page.keyboard.press("Tab")  # keyboard focus moves on from the message box
    assert page.evaluate("() => document.activeElement.textContent") == "Send"
    screenshot(page, "chat-360", stack.tmp)


def test_after_a_server_restart_the_page_reconnects_and_shows_missed_messages(
    page: Any, stack: Stack
) -> None:
    room = f"restart-{uuid.uuid4().hex[:6]}"
    open_room(page, stack, room)
    page.fill("#message", "before the restart")
    page.press("#message", "Enter")
    page.wait_for_selector(".msg:has-text('Echo: before the restart')")
    assert stack.serve.terminate() == 0
    page.wait_for_selector("#conn:has-text('reconnecting')")
    # While the page's server is down, another server on the same database takes a
    # message in that room: the page has to catch up on it when its server is back.
    other = start_serve(
        stack.serve.home, stack.model.url, characters=[stack.character], env=stack.env
    )
    try:
        with httpx.Client(base_url=other.url, headers=other.headers(stack.key), timeout=30) as c:
            sent = c.post(f"/v1/agents/{AGENT}/messages", json={"room": room, "text": "missed one"})
            assert sent.status_code == 200, sent.text
    finally:
        other.terminate()
    stack.serve = start_serve(
        stack.serve.home,
        stack.model.url,
        characters=[stack.character],
        env=stack.env,
        args=["--port", str(stack.port)],
    )
    page.wait_for_selector(".msg:has-text('Echo: missed one')", timeout=30_000)
    assert page.locator(".msg:has-text('missed one')").count() == 2  # message and reply
    assert page.inner_text("#conn") == ""
    page.fill("#message", "after the restart")
    page.press("#message", "Enter")
    page.wait_for_selector(".msg:has-text('Echo: after the restart')")
    assert json.dumps(page.errors) == "[]"
