"""The web page at / in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
type a question, watch the answer stream in, both modes, new chat, the disclaimer, safety notices and
the findings table, and a phone-sized screen. Screenshots go to $MING_SCREENSHOTS (default /tmp)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures.serve.live import LiveServer

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install -y chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api")
SHOTS = Path(os.environ.get("MING_SCREENSHOTS", "/tmp"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tiny_qwen_engine):
    from ming.engine.base import GenerationConfig
    with LiveServer(tiny_qwen_engine, safety="on",
                    generation=GenerationConfig(max_new_tokens=20, temperature=0.8, top_p=0.95)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    pg = ctx.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(server.url + "/")
    yield pg
    ctx.close()


def _watch_growth(page):
    """Record the answer bubble's text length at every DOM change (to see it stream)."""
    page.evaluate("""() => {
        window.__lengths = [];
        new MutationObserver(() => {
            const b = document.querySelector('[data-testid=answer]:last-of-type .bubble');
            if (b) window.__lengths.push(b.textContent.length);
        }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
    }""")


def _ask(page, text):
    n = page.locator("[data-testid=answer]").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(f"document.querySelectorAll('[data-testid=answer][data-done=\"1\"]').length > {n}")
    return page.locator("[data-testid=answer]").nth(n)


def test_question_streams_an_answer(page, server):
    from ming import DISCLAIMER

    assert page.locator("#disclaimer").is_visible()
    assert page.locator("#disclaimer").inner_text() == DISCLAIMER
    assert page.locator("#mode-qa").get_attribute("aria-selected") == "true"
    bodies = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None)
    _watch_growth(page)
    answer = _ask(page, "我最近总是头痛，怎么办？")
    text = answer.locator(".bubble").inner_text()
    assert len(text) > 5
    lengths = page.evaluate("window.__lengths")
    assert len({x for x in lengths if 0 < x < len(text)}) >= 3, lengths  # it grew piece by piece
    assert bodies[0]["stream"] is True and bodies[0]["mode"] == "qa"
    assert page.locator("#status").inner_text().startswith("模型")
    page.screenshot(path=str(SHOTS / "ming-web-desktop.png"), full_page=True)


def test_consult_mode_sends_the_history_and_new_chat_clears_it(page):
    bodies = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None)
    page.click("#mode-consult")
    assert page.locator("#mode-consult").get_attribute("aria-selected") == "true"
    assert page.locator("#welcome-consult").is_visible()
    first = _ask(page, "我发烧了")
    _ask(page, "三天了，最高39度")
    assert [b["mode"] for b in bodies] == ["consult", "consult"]
    second = bodies[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == first.locator(".bubble").inner_text()
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0 and page.locator("#welcome").is_visible()
    _ask(page, "咳嗽")
    assert [m["role"] for m in bodies[2]["messages"]] == ["user"]


def test_emergency_shows_the_escalation_and_rules(page):
    answer = _ask(page, "我胸口剧烈疼痛，出冷汗，喘不上气，已经二十分钟了")
    assert "120" in answer.locator(".safety-text").first.inner_text()
    notice = answer.locator("[data-testid=safety-notice]")
    assert notice.is_visible() and "escalation" in notice.inner_text() and "CARD-" in notice.inner_text()


def test_report_shows_the_findings_table(page):
    answer = _ask(page, "血常规：白细胞 15.2 ×10^9/L，血红蛋白 98 g/L，血小板 210 ×10^9/L，这是什么意思？")
    table = answer.locator("[data-testid=findings]")
    assert table.is_visible()
    assert table.locator("th").first.inner_text() == "项目"
    rows = table.locator("tbody tr")
    assert rows.count() == 3 and "白细胞" in rows.first.inner_text()
    page.screenshot(path=str(SHOTS / "ming-web-findings.png"), full_page=True)


def _phone(browser, server):
    """A 390×844 phone (iPhone 12-14 size) with touch, on the page."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                              has_touch=True, locale="zh-CN")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url + "/")
    return ctx, page


def test_phone_sized_screen(browser, server):
    ctx, page = _phone(browser, server)
    _ask(page, "我胸口剧烈疼痛，出冷汗，喘不上气")
    # nothing wider than the screen; the controls are on screen and big enough to tap
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for sel in ("#disclaimer", "#mode-qa", "#mode-consult", "#new-chat", "#input", "#send"):
        box = page.locator(sel).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, sel
    assert page.locator("#send").bounding_box()["height"] >= 40
    page.screenshot(path=str(SHOTS / "ming-web-phone.png"))
    ctx.close()


def test_api_key_prompt(browser, tiny_qwen_engine):
    with LiveServer(tiny_qwen_engine, api_key="k1") as srv:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(srv.url + "/")
        page.wait_for_selector("#auth:not([hidden])")
        page.fill("#api-key", "k1")
        page.dispatch_event("#api-key", "change")
        answer = _ask(page, "头痛")
        assert answer.locator("[data-testid=error]").count() == 0 and answer.locator(".bubble").inner_text()
        ctx.close()


def test_consult_panel_shows_the_controllers_reasoning_on_a_phone(browser, server):
    ctx, page = _phone(browser, server)
    panel = page.locator("[data-testid=consult-panel]")
    _ask(page, "头痛")
    assert not panel.is_visible()  # qa mode: no consultation, no panel
    page.click("#mode-consult")
    first = _ask(page, "我肚子疼两天了")
    assert panel.is_visible() and "问诊思路" in panel.locator("summary").inner_text()
    assert "追问中" in page.locator("#consult-summary").inner_text()
    page.click("#consult-panel summary")  # collapsed by default: one tap opens it
    candidates = page.locator("#consult-candidates li")
    assert candidates.count() >= 2 and "支持：" in candidates.first.inner_text()
    assert "腹痛" in page.locator("#consult-known").inner_text()
    question = page.locator("#consult-next").inner_text()
    assert question and question in first.locator(".bubble").inner_text()  # the question asked is the one shown
    second = _ask(page, "在右下腹，按着更疼，有点发烧")
    assert "阑尾炎" in second.locator(".bubble").inner_text()
    assert "紧急" in page.locator("#consult-summary").inner_text()
    assert page.locator("#consult-flags").is_visible() and "阑尾炎" in page.locator("#consult-flags").inner_text()
    assert "右下腹" in page.locator("#consult-known").inner_text()
    assert not page.locator("#consult-next").is_visible()  # escalated: nothing more to ask
    # fits the phone: nothing wider than the screen, the panel leaves room for the conversation and the input
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] < 844 / 2
    assert page.locator("#input").bounding_box()["y"] + page.locator("#input").bounding_box()["height"] <= 844
    page.screenshot(path=str(SHOTS / "ming-web-consult-phone.png"))
    page.click("#new-chat")
    assert not panel.is_visible()
    ctx.close()


def test_stage_text_is_shown_apart_and_kept_out_of_the_history(browser, tiny_qwen_engine, tmp_path, monkeypatch):
    """`ming serve --retrieval`: the "参考：知识库·…" line (text of the retrieval stage, ming_kind "retrieval") is
    shown in the answer, set apart from the model's words, and not sent back as the assistant's message."""
    monkeypatch.setenv("MING_KB", str(Path(__file__).parent / "fixtures" / "kb_tiny"))
    monkeypatch.setenv("MING_HOME", str(tmp_path))
    with LiveServer(tiny_qwen_engine, safety="on", retrieval=True) as srv:
        ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN")
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(srv.url + "/")
        answer = _ask(page, "转移性右下腹痛是阑尾炎吗")
        cite = answer.locator("[data-testid=stage-retrieval]")
        assert cite.is_visible() and "参考：知识库·阑尾炎" in cite.inner_text()
        assert cite.evaluate("e => getComputedStyle(e).color") != answer.locator(".bubble").evaluate(
            "e => getComputedStyle(e).color")  # set apart from the model's text
        sent = []
        page.on("request", lambda r: sent.append(r.post_data) if r.url.endswith("/v1/chat/completions") else None)
        _ask(page, "需要做什么检查")
        history = json.loads(sent[-1])["messages"]
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        assert "参考：" not in history[1]["content"]  # the model's words only
        ctx.close()


def test_a_report_answer_says_how_many_unverified_sentences_were_left_out(browser, tiny_qwen_engine, monkeypatch):
    """Precision first on the page: the model's sentence about the report that cannot be checked against the
    findings is not shown, and the answer's footer says how many were left out. The real tiny engine runs; only
    the text of its first chunk is scripted (a random tiny model says nothing about blood tests)."""
    from ming.engine.base import Chunk, GenerationConfig

    real = tiny_qwen_engine.stream
    said = "血红蛋白是运送氧气的蛋白。白细胞升高，提示感染。多喝水。"

    def scripted(prompt_ids, gen, cancel=None):
        first = True
        for ch in real(prompt_ids, gen, cancel):
            yield Chunk(text=said if first else "", finish_reason=ch.finish_reason, prompt_tokens=ch.prompt_tokens,
                        completion_tokens=ch.completion_tokens, cached_tokens=ch.cached_tokens)
            first = False

    monkeypatch.setattr(tiny_qwen_engine, "stream", scripted)
    with LiveServer(tiny_qwen_engine, safety="on", generation=GenerationConfig(max_new_tokens=8)) as srv:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(srv.url + "/")
        answer = _ask(page, "血常规：白细胞 13.5×10^9/L，中性粒细胞 85%，血红蛋白 118 g/L（女），C反应蛋白 42 mg/L。这是什么情况？")
        text = answer.inner_text()
        assert "白细胞升高，提示感染。" in text and "多喝水。" in text
        assert "运送氧气" not in text  # about a test, not checkable against the table: left out
        assert "略去 1 句无法与检验结果核对的解释" in answer.locator(".meta").inner_text()
        ctx.close()
