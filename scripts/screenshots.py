"""Take the pictures in docs/operators.md: `.venv/bin/python scripts/screenshots.py`.

Starts a dev server (fresh SQLite file, free ports) and the worker, walks four referrals of
one RFI to New, Evaluating, Negotiating and Skipped, then has headless Chromium (Debian's
`chromium-headless-shell` or `chromium`) photograph the UI: the list filtered by status and
one referral's page with its summary, details and labelled timeline.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starter import referrals  # noqa: E402
from starter.client import connect  # noqa: E402
from starter.dev import dev_server_command, free_port  # noqa: E402
from starter.processes import running  # noqa: E402
from starter.settings import Settings  # noqa: E402
from starter.ui import ListFilter, list_link  # noqa: E402
from workflows.models import Rfi, Status, referral_workflow_id  # noqa: E402

OUT = ROOT / "docs" / "images"
PARTNERS = ["acme-consulting", "globex", "initech"]
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


def browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        sys.exit("error: no headless Chromium: apt-get install chromium-headless-shell")
    return found


def photograph(url: str, path: Path, height: int = 900) -> None:
    subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size=1440,{height}",
            "--virtual-time-budget=15000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"wrote {path.relative_to(ROOT)}")


async def walk(settings: Settings) -> Rfi:
    client = await connect(settings, retry_for=60)
    data = json.loads((ROOT / "samples" / "rfi.json").read_text())
    now = datetime.now(UTC)
    data.update(id=f"rfi-{now:%m%d-%H%M}", received_at=now.isoformat())
    rfi = Rfi.model_validate(data)
    await referrals.submit(client, rfi, PARTNERS)
    await asyncio.sleep(3)
    await referrals.act(client, rfi.id, "acme-consulting", "interested", {})
    await referrals.act(
        client,
        rfi.id,
        "acme-consulting",
        "accept",
        {
            "estimated_deal_value": "48000",
            "currency": "EUR",
            "estimated_close_date": str(now.date() + timedelta(days=90)),
        },
    )
    await referrals.act(client, rfi.id, "globex", "interested", {})
    await referrals.act(client, rfi.id, "initech", "no_thanks", {})
    await asyncio.sleep(5)  # emails and archive writes done, visibility caught up
    return rfi


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
            rfi = asyncio.run(walk(settings))
            listed = ListFilter(statuses=(Status.NEGOTIATING, Status.EVALUATING), rfi_id=rfi.id)
            photograph(list_link(ui, "default", listed.query()), OUT / "list-by-status.png")
            workflow_id = referral_workflow_id(rfi.id, "acme-consulting")
            page = f"{ui}/namespaces/default/workflows/{workflow_id}"
            photograph(page, OUT / "referral-page.png", height=1400)


if __name__ == "__main__":
    main()
