"""After a restore cut short, the technician's next command finds the restored outbox."""

from __future__ import annotations

import json
from pathlib import Path

from buffer import Outbox
from buffer.backup import list_backups
from tests.buffer.test_cli import cli
from tests.crashpoints.outboxes import GATEWAY, MAX_STEPS, build, fresh_copy
from tests.crashpoints.steps import fork_cut


def test_outbox_stats_after_a_restore_cut_between_its_renames_shows_the_restored_outbox(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    build(state / "outbox.db")
    name = list_backups(state / "backups")[0].name
    scratch = tmp_path / "cut"
    path = scratch / "outbox.db"
    config = tmp_path / "punchgate.toml"
    config.write_text(
        f'[agent]\ngateway_id = "{GATEWAY}"\nstate_dir = "{scratch}"\n\n'
        "[outbox]\ndisk_reserve_mb = 0\n"
    )
    # Cut once the old outbox is moved aside, before the copy is renamed into place.
    for at in range(1, MAX_STEPS):
        fresh_copy(state, scratch)
        cut = fork_cut(lambda: Outbox.restore(scratch / "backups" / name, path, GATEWAY), at=at)
        assert cut.startswith("PAUSED"), "the restore never left the outbox name empty"
        if not path.exists():
            break

    out = cli("outbox", "stats", "--json", "--config", str(config))
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)["pending"] == 200 - 200 // 3
