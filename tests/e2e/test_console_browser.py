"""The operator console in real Chromium (Debian's `chromium`, driven by Playwright).

An admin signs in through the hosted login page, lands on the console, revokes another
user's session with its button, and sees the revocation arrive in the live audit tail. A
screenshot is saved under tests/artifacts/ for the record.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.auth_helpers import PASSWORD, http_client, session_info, signup, unique
from tests.e2e.test_authorization import gateway_env, invite_member
from tests.e2e.test_sessions_admin import session_id_of

pytestmark = [pytest.mark.e2e]

CHROMIUM = Path(os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing")


async def test_console_revokes_a_session_and_shows_it_live(tmp_path: Path) -> None:
    require_chromium()
    from playwright.async_api import async_playwright, expect

    async with gateway_env(tmp_path) as env, http_client() as http:
        admin = await signup(env, http, tenant=unique("ta"))
        member = await invite_member(env, http, admin, "viewer")
        member_sid = await session_id_of(env, http, member.session)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{env.url}/.gateway/console")
                await page.fill("#email", admin.email)
                await page.fill("#password", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url("**/.gateway/console")
                await expect(page.locator("#live")).to_have_text("(live)")
                row = page.locator(f'tr[data-session="{member_sid}"]')
                await row.locator("button").click()
                await expect(row.locator("button")).to_have_text("Revoked")
                live = page.locator(
                    f'#audit-tail li[data-action="session.revoke"][data-target="{member_sid}"]'
                )
                await expect(live).to_have_count(1)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
            finally:
                await browser.close()
        status, _, _ = await session_info(env, http, member.session)
        assert status == 401
