"""What a SIGHUP reload changes: which devices to start, stop or restart, and what needs a restart.

Pure functions over two ``Settings`` values, so the plan can be tested without a daemon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from config.settings import Settings

# [agent] keys the running daemon cannot change: they name the outbox and the MQTT identity.
RESTART_ONLY_AGENT_KEYS = ("gateway_id", "state_dir")


@dataclass(frozen=True)
class ReloadPlan:
    """The difference between the running and the new configuration."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mqtt_changed: bool = False
    outbox_changed: bool = False
    restart_required: list[str] = field(default_factory=list)  # keys kept at their running value

    @property
    def start(self) -> list[str]:
        """Devices that need a new worker."""
        return self.added + self.changed

    @property
    def stop(self) -> list[str]:
        """Devices whose worker must stop."""
        return self.removed + self.changed

    def summary(self) -> dict[str, object]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": len(self.unchanged),
            "mqtt_changed": self.mqtt_changed,
            "restart_required": self.restart_required,
        }


def enabled_devices(settings: Settings) -> dict[str, object]:
    """Devices the daemon runs (``enabled = false`` ones are configured but not run)."""
    return {d.id: d for d in settings.devices if d.enabled}


def plan_reload(running: Settings, new: Settings) -> tuple[ReloadPlan, Settings]:
    """The plan, and the settings to run: ``new`` with restart-only keys kept as they run."""
    restart_required = [
        f"agent.{key}"
        for key in RESTART_ONLY_AGENT_KEYS
        if getattr(running.agent, key) != getattr(new.agent, key)
    ]
    effective = new
    if restart_required:
        kept = {key: getattr(running.agent, key) for key in RESTART_ONLY_AGENT_KEYS}
        effective = new.model_copy(update={"agent": new.agent.model_copy(update=kept)})
    old, now = enabled_devices(running), enabled_devices(effective)
    # Devices inherit [agent].timezone: a change there changes every device that relies on it.
    tz_changed = running.agent.timezone != effective.agent.timezone
    changed = [
        d
        for d in old
        if d in now
        and (old[d] != now[d] or (tz_changed and getattr(now[d], "timezone", None) is None))
    ]
    plan = ReloadPlan(
        added=[d for d in now if d not in old],
        removed=[d for d in old if d not in now],
        changed=changed,
        unchanged=[d for d in old if d in now and d not in changed],
        mqtt_changed=running.mqtt != effective.mqtt
        or running.client_id != effective.client_id
        or running.agent.site != effective.agent.site,
        outbox_changed=running.outbox != effective.outbox,
        restart_required=restart_required,
    )
    return plan, effective
