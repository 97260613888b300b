"""A visitor's whole visit in a real browser, against both stacks: upload a photo, watch the
stages pass, see the result with videos that play, open the share link, delete the photo."""

from __future__ import annotations

import re

import httpx
import pytest

#: a job renders three clips; on a loaded 2-core machine that can take a while
RESULT_TIMEOUT_MS = 240_000
ORDER = ["upload", "queued", "encoding", "matching", "rendering", "succeeded"]


def no_horizontal_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"page is wider than the screen: {widths}"


def check_video_plays(page, clip: str) -> dict:
    """The clip has loaded, knows its duration, and its current time moves on."""
    video = page.locator(f"video[data-clip={clip}]")
    handle = video.element_handle()
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0 && v.currentTime > 0.05",
                           arg=handle, timeout=60_000)
    first = handle.evaluate("v => v.currentTime")
    page.wait_for_function("([v, t]) => v.currentTime !== t", arg=[handle, first], timeout=30_000)
    return handle.evaluate("v => ({readyState: v.readyState, duration: v.duration, paused: v.paused, "
                           "muted: v.muted, loop: v.loop, playsInline: v.playsInline, error: v.error && v.error.code})")


def test_visit_from_photo_to_playing_videos_share_and_delete(stack, phone, desktop, portrait,
                                                             artifacts_dir):
    page = phone.new_page()
    page.goto(stack.base_url + "/")
    assert page.locator("#start-title").inner_text() == "Which celebrity do you look like?"
    consent = page.locator("#consent").inner_text()
    assert "deleted automatically 24 hours after upload" in consent and "Delete my photo" in consent
    assert page.locator("#submit").is_disabled()

    page.set_input_files("#file", str(portrait))
    assert page.locator("#submit").is_enabled()
    assert page.locator("#preview-name").inner_text() == portrait.name
    no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"web-phone-start-{stack.kind}.png"), full_page=True)
    page.locator("#submit").click()
    page.wait_for_selector("body[data-view=result]", timeout=RESULT_TIMEOUT_MS)

    # the stages passed in order, followed by server-sent events
    states = page.evaluate("document.body.dataset.states").split(",")
    assert states[0] == "upload" and states[-1] == "succeeded", states
    assert states == sorted(states, key=ORDER.index) and "rendering" in states, states
    assert page.evaluate("document.body.dataset.transport") == "sse"
    assert page.locator("#stages li.done").count() == 5

    # the result shown is the job's: names and similarity as a percentage
    job_id = re.search(r"job=([0-9a-f]+)", page.url).group(1)
    token = page.evaluate(f"localStorage.getItem('lookalike:owner:{job_id}')")
    with httpx.Client(base_url=stack.base_url, timeout=30, trust_env=False) as c:
        view = c.get(f"/visit/jobs/{job_id}?{token}").json()
    result = view["result"]
    good, bad = result["good_news"], result["bad_news"]
    assert bad["name"] == "Donald Rumsfeld"
    for kind, match in (("good", good), ("bad", bad)):
        card = page.locator(f"[data-news={kind}]")
        assert card.locator(".name").inner_text() == match["name"]
        assert card.locator(".pct").inner_text() == f"{round(100 * match['similarity'])}\u00a0%"
        images = card.locator(".faces img")
        assert images.count() == 2
        assert images.nth(1).get_attribute("alt") == f"The face of {match['name']}"
        for i in range(2):
            assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") >= 128
    assert page.locator("#matches li").count() == 4

    # the videos: muted, looping, inline, and actually playing (H.264 in Debian's Chromium)
    for clip in ("morph_good", "morph_bad", "smile"):
        state = check_video_plays(page, clip)
        assert state["error"] is None and state["readyState"] >= 2, state
        assert state["muted"] and state["loop"] and state["playsInline"] and not state["paused"], state
        assert 0.5 < state["duration"] < 5, state  # 1.0 s morph + 2 x 0.2 s hold in the test stacks

    # the download buttons lead to the files
    links = page.locator("#downloads a")
    assert links.count() == 4
    with httpx.Client(timeout=30, trust_env=False) as c:
        for i in range(4):
            got = c.get(links.nth(i).get_attribute("href"))
            assert got.status_code == 200 and len(got.content) > 1000, links.nth(i).inner_text()

    no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts_dir / f"web-phone-{stack.kind}.png"), full_page=True)

    # the share link: a server-rendered page with OpenGraph tags, the result without delete
    share = page.locator("#share-url").input_value()
    assert share.startswith(f"{stack.base_url}/r/{job_id}?exp=")
    with httpx.Client(timeout=30, trust_env=False) as c:
        shared = c.get(share)
        assert shared.status_code == 200
        assert f'<meta property="og:title" content="I look like {good["name"]}!">' in shared.text
        og_image = re.search(r'<meta property="og:image" content="([^"]+)"', shared.text).group(1)
        image = c.get(og_image.replace("&amp;", "&"))
        assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
    other = desktop.new_page()
    other.goto(share)
    other.wait_for_selector("body[data-view=result]", timeout=60_000)
    assert other.locator("[data-news=good] .name").inner_text() == good["name"]
    assert other.locator("#delete-box").is_hidden()  # a viewer cannot delete
    check_video_plays(other, "morph_good")
    no_horizontal_scroll(other)
    other.screenshot(path=str(artifacts_dir / f"web-desktop-{stack.kind}.png"), full_page=True)

    # a viewer's token cannot delete; the owner's button does, for real
    viewer = share.split("?", 1)[1]
    with httpx.Client(base_url=stack.base_url, timeout=30, trust_env=False) as c:
        assert c.delete(f"/visit/jobs/{job_id}?{viewer}").status_code == 403
    assert stack.objects(f"jobs/{job_id}/"), "the job's objects should exist before delete"
    page.locator("#delete").click()
    page.wait_for_selector("body[data-view=deleted]", timeout=60_000)
    assert stack.objects(f"jobs/{job_id}/") == []
    assert stack.job_row(job_id).deleted_at is not None
    with httpx.Client(timeout=30, trust_env=False) as c:
        gone = c.get(share)
        assert gone.status_code == 410 and "This result is gone" in gone.text
    other.reload()
    assert other.locator("#message-title").inner_text() == "This result is gone"


def test_photo_without_a_face_shows_the_advice(stack, phone, fixtures_dir, artifacts_dir):
    page = phone.new_page()
    page.set_viewport_size({"width": 360, "height": 740})  # the narrowest phone we design for
    page.goto(stack.base_url + "/")
    no_horizontal_scroll(page)
    page.set_input_files("#file", str(fixtures_dir / "bad-inputs" / "no_face_coffee.jpg"))
    page.locator("#submit").click()
    page.wait_for_selector("body[data-view=error]", timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#error").get_attribute("data-code") == "no_face"
    assert page.locator("#error-title").inner_text() == "We could not find a face"
    assert page.locator("#error-message").inner_text().startswith("No face")
    advice = page.locator("#error-advice").inner_text()
    assert "Face the camera" in advice and "good light" in advice and "one person" in advice
    no_horizontal_scroll(page)
    if stack.kind == "embedded":
        page.screenshot(path=str(artifacts_dir / "web-phone-no-face.png"), full_page=True)


def test_a_file_that_is_no_photo_is_refused_at_the_door(embedded_stack, phone, fixtures_dir):
    before = embedded_stack.job_count()
    page = phone.new_page()
    page.goto(embedded_stack.base_url + "/")
    page.set_input_files("#file", str(fixtures_dir / "bad-inputs" / "not_an_image.jpg"))
    page.locator("#submit").click()
    page.wait_for_selector("body[data-view=error]", timeout=60_000)
    assert page.locator("#error").get_attribute("data-code") == "unsupported_image"
    assert "JPEG" in page.locator("#error-advice").inner_text()
    assert embedded_stack.job_count() == before


def test_tampered_share_link_does_not_work(embedded_stack):
    with httpx.Client(base_url=embedded_stack.base_url, timeout=30, trust_env=False) as c:
        r = c.get("/r/0123456789abcdef?exp=9999999999&sig=nope")
        assert r.status_code == 403 and "This link does not work" in r.text
        r = c.get("/visit/jobs/0123456789abcdef?exp=9999999999&sig=nope")
        assert r.status_code == 403 and r.json()["error"]["code"] == "link_expired"


def test_operators_gallery_page_needs_the_admin_key(embedded_stack, desktop, artifacts_dir):
    page = desktop.new_page()
    page.goto(embedded_stack.base_url + "/admin")
    page.fill("#admin-key", embedded_stack.keys["client"])
    page.locator("#key-form button").click()
    page.wait_for_function("document.getElementById('gallery-status').textContent.includes('admin')")
    assert page.locator(".person").count() == 0

    page.fill("#admin-key", embedded_stack.keys["admin"])
    page.locator("#key-form button").click()
    page.wait_for_selector(".person")
    people = page.locator(".person")
    assert people.count() == 4
    names = {people.nth(i).locator("h2").inner_text(): people.nth(i).locator(".cat").inner_text()
             for i in range(4)}
    assert names == {"Tom Hanks": "good news", "Halle Berry": "good news",
                     "Tony Blair": "good news", "Donald Rumsfeld": "bad news"}
    page.wait_for_function("[...document.querySelectorAll('.thumbs img')].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=30_000)
    assert page.locator(".thumbs img").count() == 8
    assert page.locator(".thumbs img").first.get_attribute("alt").endswith(", photo 1")
    page.screenshot(path=str(artifacts_dir / "web-desktop-gallery.png"), full_page=True)
