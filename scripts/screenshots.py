"""Take the pictures in docs/operators.md: `.venv/bin/python scripts/screenshots.py`.

Starts a dev server (fresh SQLite file, free ports) and the worker, runs the demo of
`referrals dev` (one RFI: Negotiating, Skipped and New), then has headless Chromium (Debian's
`chromium-headless-shell` or `chromium`) photograph the UI: the list filtered by status and
one referral's page: its summary and details, and its labelled timeline.
"""

import asyncio
import base64
import os
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starter.client import connect  # noqa: E402
from starter.dev import dev_server_command, free_port, run_demo  # noqa: E402
from starter.processes import running  # noqa: E402
from starter.settings import Settings  # noqa: E402
from starter.ui import ListFilter, list_link  # noqa: E402
from workflows.models import Status, referral_workflow_id  # noqa: E402

OUT = ROOT / "docs" / "images"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        sys.exit("error: no headless Chromium: apt-get install chromium-headless-shell")
    return found


def photograph(url: str, path: Path, height: int = 900) -> None:
    path.write_bytes(asyncio.run(capture(url, height)))
    print(f"wrote {path.relative_to(ROOT)}")


async def capture(url: str, height: int, settle_s: float = 8) -> bytes:
    """Chromium, driven over its DevTools protocol: open the page, let the UI load and
    render for ``settle_s`` (a live page never goes idle), capture it."""
    port = free_port()
    command = [
        browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size=1440,{height}",
        f"--remote-debugging-port={port}",
        "about:blank",
    ]
    with running(command, quiet=True, grace=5, group=True):
        async with aiohttp.ClientSession() as session:
            pages = []
            for _ in range(60):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                        pages = [p for p in await answer.json() if p["type"] == "page"]
                    if pages:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                calls = iter(range(1, 1000))

                async def call(method: str, **params: object) -> dict[str, object]:
                    number = next(calls)
                    await ws.send_json({"id": number, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json()
                        if message.get("id") == number:
                            return dict(message.get("result", {}))

                await call("Page.navigate", url=url)
                await asyncio.sleep(settle_s)
                shot = await call("Page.captureScreenshot", format="png")
    return base64.b64decode(str(shot["data"]))


async def walk(settings: Settings) -> str:
    """The demo of `referrals dev`: one RFI, Negotiating, Skipped and New; its id."""
    rfi_id = await run_demo(await connect(settings, retry_for=60))
    await asyncio.sleep(5)  # emails and archive writes done, visibility caught up
    return rfi_id


async def latest_run(settings: Settings, workflow_id: str) -> str:
    description = await (await connect(settings)).get_workflow_handle(workflow_id).describe()
    return description.run_id


def main() -> None:
    port, ui_port = free_port(), free_port()
    ui = f"http://localhost:{ui_port}"
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        address = f"localhost:{port}"
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_NAMESPACE": "default",
            "REFERRALS_DATABASE_URL": f"sqlite:///{folder}/archive.db",
            "REFERRALS_OUTBOX_DIR": f"{folder}/outbox",
        }
        settings = Settings(TEMPORAL_ADDRESS=address, TEMPORAL_NAMESPACE="default")
        server_command = [*dev_server_command(Path(folder) / "temporal.db", port, ui_port)]
        with (
            running(server_command, quiet=True),
            running([sys.executable, "-m", "worker"], env=env, cwd=ROOT, quiet=True),
        ):
            rfi_id = asyncio.run(walk(settings))
            listed = ListFilter(statuses=(Status.NEGOTIATING, Status.SKIPPED), rfi_id=rfi_id)
            photograph(list_link(ui, "default", listed.query()), OUT / "list-by-status.png")
            workflow_id = referral_workflow_id(rfi_id, "acme-consulting")
            run_id = asyncio.run(latest_run(settings, workflow_id))
            page = f"{ui}/namespaces/default/workflows/{quote(workflow_id, safe='')}/{run_id}"
            photograph(f"{page}/user-metadata", OUT / "referral-details.png", height=700)
            photograph(f"{page}/timeline", OUT / "referral-timeline.png", height=1100)


if __name__ == "__main__":
    main()
