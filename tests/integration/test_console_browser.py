"""The operator's console end to end, in headless Chromium (Debian's chromium and chromedriver,
driven by Selenium), against a real gateway process in server mode, real workers and the sandbox.

The store holds what an operator must see: a connection turned ``needs_reauth`` by the fleet
itself (its refresh token was used elsewhere, so the provider answered ``invalid_grant``), and
dead letters. The browser opens the console with the operator's token, sees both, clicks Replay
on the letter whose cause was fixed meanwhile, and the replayed call runs on a worker against
the sandbox. Requests without credentials are refused. Screenshots go to
``$SPARK_INTEGRATIONS_TEST_ARTIFACTS/console`` (else the test's tmp_path); their folder is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import IN_CI
from tests.integration.fleet import (
    FleetProcess,
    add_connection,
    client_app,
    dead_letters,
    free_port,
    outcome,
    run_cli,
    send_call,
    start_sandbox,
    start_workers,
    wait_for,
)
from tests.integration.oauth_helpers import (
    CLIENT,
    CLIENT_SECRET,
    connect_directly,
    connection_row,
    expire_in_store,
    stored_token,
)

pytestmark = pytest.mark.server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
API_KEY = "sk-console-" + uuid.uuid4().hex
CONSOLE_TOKEN = "console-" + uuid.uuid4().hex
FLOWER_AUTH = ("ops", "pw-" + uuid.uuid4().hex)


def chromium_or_skip() -> None:
    """Skip when Chromium is not installed here; under CI=true it must be (CI installs it)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if IN_CI:
        pytest.fail(message + "; CI must run the console's browser test", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    chosen = os.environ.get("SPARK_INTEGRATIONS_TEST_ARTIFACTS")
    folder = Path(chosen) / "console" if chosen else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1600,2200",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def row(driver: Any, section: str, needle: str) -> str:
    """The text of the one row of a console section that mentions ``needle``."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(
        By.XPATH, f"//section[@id='{section}']//tr[td[contains(., '{needle}')]]"
    )
    assert len(rows) == 1, (section, needle, [r.text for r in rows])
    return str(rows[0].text)


def status(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=10, allow_redirects=False, **kwargs)


def test_the_console_in_a_browser_shows_the_fleet_and_replays_a_dead_letter(
    redis_env: dict[str, str],
    short_tmp: Path,
    processes: list[Any],
    browser: Any,
    artifacts: Path,
) -> None:
    from selenium.webdriver.common.by import By

    env = dict(
        redis_env,
        SPARK_INTEGRATIONS_CONSOLE_TOKEN=CONSOLE_TOKEN,
        SPARK_INTEGRATIONS_FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH),
    )
    box = start_sandbox(env, short_tmp, processes, f"--api-key={API_KEY}", "--rate-limit=1000")
    # An OAuth connection whose refresh token was used elsewhere: its next refresh meets
    # invalid_grant and the fleet turns it needs_reauth, saying why.
    stolen = add_connection(env, "stolen", {"base_url": box.url, **CLIENT, "rate_limit": 1000},
                            CLIENT_SECRET)  # fmt: skip
    connect_directly(env, stolen, box.url)
    token = stored_token(env, stolen)
    assert token is not None and token.refresh_token
    used = requests.post(
        f"{box.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token.refresh_token},
        auth=("sandbox", "sandbox-secret"),
        timeout=10,
    )
    assert used.status_code == 200
    expire_in_store(env, stolen)
    # A connection whose key is wrong: its call is dead-lettered, then the key is fixed.
    fixme = add_connection(env, "fixme", {"base_url": box.url}, "api_key=wrong-key")
    [worker] = start_workers(env, short_tmp, processes, concurrency=1)
    app = client_app(env)
    refused = outcome(send_call(app, stolen, "create_message", {"text": "never"}), timeout=120)
    failed = outcome(send_call(app, fixme, "create_message", {"text": "later"}, key="c-1"))
    assert not refused[0] and not failed[0], (refused, failed)
    state, reason = connection_row(env, stolen)
    assert state == "needs_reauth" and reason is not None and "invalid_grant" in reason, (
        state, reason, refused, worker.output()[-3000:]
    )  # fmt: skip
    [letter] = [d for d in dead_letters(env) if d["connection_id"] == fixme]
    fixed = run_cli(env, "connections", "update", fixme, "--secret", f"api_key={API_KEY}")
    assert fixed.returncode == 0, fixed.stderr

    port = free_port()
    gateway = FleetProcess(env, ["gateway", "--port", str(port)], short_tmp / "gateway.log")
    processes.append(gateway)
    gateway.start().wait_ready("gateway listening on")
    url = f"http://127.0.0.1:{port}/console"

    # Without credentials, or with wrong ones: refused. Flower's credentials open it.
    anonymous = status(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert status(url, auth=(FLOWER_AUTH[0], "wrong")).status_code == 401
    assert status(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert status(url, auth=FLOWER_AUTH).status_code == 200

    # The browser presents the operator's token on every request it sends to the gateway.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {CONSOLE_TOKEN}"}}
    )
    browser.get(url)
    assert browser.title == "Console - spark-integrations"
    connection = row(browser, "connections", "stolen")
    assert "needs_reauth" in connection and reason in connection
    assert "active" in row(browser, "connections", "fixme")
    shown = row(browser, "dead-letters", letter["id"])
    assert "not replayed" in shown and "refused the credentials" in shown
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")) == 2
    page = browser.page_source
    for secret in (CONSOLE_TOKEN, FLOWER_AUTH[1], API_KEY, "wrong-key", "sandbox-secret",
                   token.refresh_token, token.access_token):  # fmt: skip
        assert secret not in page
    browser.save_screenshot(str(artifacts / "console.png"))

    browser.find_element(By.CSS_SELECTOR, f"button[value='{letter['id']}']").click()
    flash = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "p.flash"), 30, "the replay's message"
    )[0].text
    found = re.fullmatch(rf"Dead letter {letter['id']} replayed as task (\S+)\.", flash)
    assert found, flash
    assert browser.current_url == url + "#dead-letters"
    answer = app.AsyncResult(found.group(1)).get(timeout=90)
    assert answer["ok"] is True and answer["data"]["text"] == "later"
    assert box.stats()["messages_created"] == 1
    assert "not replayed" not in row(browser, "dead-letters", letter["id"])
    [after] = [d for d in dead_letters(env) if d["id"] == letter["id"]]
    assert after["replayed_at"] is not None
    browser.save_screenshot(str(artifacts / "console-after-replay.png"))
    assert (artifacts / "console.png").stat().st_size > 0
    # The gateway said nothing of the operator's token in its log.
    assert CONSOLE_TOKEN not in gateway.output()
