"""The built-in dashboard in a real headless Chromium (Debian's `chromium`; .ci/run installs
it): the numbers it renders are the gateway's, and it loads nothing from elsewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.gateway.conftest import OTHER_KEY, GatewayFactory
from tests.gateway.harness import ADMIN_TOKEN, Gateway
from tests.gateway.test_proxy_openai import MESSAGES, client


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium not found: install Debian's chromium package (.ci/run does)"
    return found


def browse(url: str, *extra: str) -> str:
    """The page's DOM after its scripts ran (headless, virtual time)."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=15000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def kpi(dom: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}">([^<]*)<', dom)
    assert found, f"no KPI {name} in the page"
    return found.group(1)


def traffic(gateway: Gateway) -> None:
    for project in ("apollo", "apollo", "zeus"):
        client(gateway, **{"X-Project": project}).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, max_tokens=20
        )
    client(gateway, key=OTHER_KEY).chat.completions.create(model="gpt-4.1", messages=MESSAGES)


def test_the_dashboard_renders_the_gateways_numbers(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Monthly, amount: "0.001"}
        """
    )
    traffic(gateway)
    dom = browse(f"{gateway.root}/dashboard#token={ADMIN_TOKEN}", "--dump-dom")
    assert 'data-ready="1"' in dom, dom[-2000:]
    # 4 requests of 19 tokens and 110 micro-dollars each (the fake provider's usage)
    assert kpi(dom, "requests") == "4"
    assert kpi(dom, "tokens") == "76"
    assert kpi(dom, "cost") == "$0.00044"
    assert kpi(dom, "avg-tokens") == "19"
    rows = re.findall(r'<tr data-namespace="([^"]+)"><td>[^<]*</td><td>(\d+)</td>', dom)
    assert rows == [("team", "3"), ("other", "1")]
    bars = re.findall(r'data-budget="([^"]+)" data-percent="([^"]+)".*?style="([^"]*)"', dom)
    # team: 330 of 1,000 micro-dollars; other: 110 micro-dollars of 10 USD
    assert sorted(bars) == [("other/other", "0", "width: 0%;"), ("team/team", "33", "width: 33%;")]
    assert re.search(r'<rect [^>]*data-usd="0.00044"', dom)  # today's bar of the trend
    shot = tmp_path / "dashboard.png"
    browse(
        f"{gateway.root}/dashboard#token={ADMIN_TOKEN}",
        f"--screenshot={shot}",
        "--window-size=1280,900",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_wrong_token_asks_for_one(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    dom = browse(f"{gateway.root}/dashboard#token=wrong", "--dump-dom")
    assert 'data-ready="error"' in dom
    assert "invalid admin token" in dom
    assert re.search(r'<form id="login"(?! hidden)', dom)


def test_the_page_loads_nothing_from_elsewhere(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    for path in ("/dashboard", "/dashboard/app.js", "/dashboard/style.css"):
        response = httpx.get(f"{gateway.root}{path}")
        assert response.status_code == 200
        assert "default-src 'none'" in response.headers["content-security-policy"]
        text = response.text
        assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(|@import""", text), path
        # the only absolute URLs are XML namespace names, which are never fetched
        urls = set(re.findall(r"https?://[^\s\"'`]+", text))
        assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xhtml"}, urls
    assert httpx.get(f"{gateway.root}/dashboard/secrets.txt").status_code == 404
