"""Browser tests of the web page: Playwright for Python driving Debian's Chromium headless
(``/usr/bin/chromium``, installed by ``make test``'s set-up; never ``playwright install``)
against the real stacks of tests/service (``lookalike serve`` and the distributed one).

The stack fixtures are those of tests/service/conftest.py, loaded under another module name;
run together with tests/service in one session they start their own copies of the stacks.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LOOKALIKE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 1}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def _service_fixtures():
    path = Path(__file__).resolve().parents[1] / "service" / "conftest.py"
    spec = importlib.util.spec_from_file_location("lookalike_service_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_svc = _service_fixtures()
service_tmp = _svc.service_tmp
redis_server = _svc.redis_server
pg_url = _svc.pg_url
s3_server = _svc.s3_server
mailbox = _svc.mailbox
small_gallery = _svc.small_gallery
distributed_stack = _svc.distributed_stack
embedded_stack = _svc.embedded_stack
stack = _svc.stack
portrait = _svc.portrait
GALLERY_PEOPLE = _svc.GALLERY_PEOPLE


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/web/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def phone(browser):
    context = browser.new_context(**PHONE)
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def desktop(browser):
    context = browser.new_context(**DESKTOP)
    context.set_default_timeout(30_000)
    yield context
    context.close()
