"""halb.vrrp.notify_args: which notify scripts run on a state change and their argv, from
keepalived.conf text through the parser to the argument vectors (no shell anywhere)."""

from __future__ import annotations

import pytest

from halb.config.keepalived import load_text
from halb.config.keepalived_model import Script
from halb.vrrp.notify_args import Scripts, commands, deleted_state

CONF = """vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        198.18.0.100
    }
    notify_master "/etc/keepalived/master.sh 'two words' $HOME;reboot"
    notify_backup /etc/keepalived/backup.sh
    notify_fault "/etc/keepalived/fault.sh fault"
    notify_stop /etc/keepalived/stop.sh
    notify /etc/keepalived/notify.sh
}
"""


def scripts_of(text: str) -> Scripts:
    inst = load_text(text, config_id="t").config.instance("VI_1")
    return Scripts(inst.notify_master, inst.notify_backup, inst.notify_fault, inst.notify_stop,
                   inst.notify)


def argvs(state: str, priority: int = 150) -> list[tuple[str, ...]]:
    return [argv for _, argv in commands("INSTANCE", "VI_1", state, priority,
                                         scripts_of(CONF))]


def test_master_specific_as_written_then_generic_with_four_arguments() -> None:
    assert argvs("MASTER") == [
        ("/etc/keepalived/master.sh", "two words", "$HOME;reboot"),  # no shell: literal words
        ("/etc/keepalived/notify.sh", "INSTANCE", "VI_1", "MASTER", "150"),
    ]


@pytest.mark.parametrize(("state", "specific"), [
    ("BACKUP", ("/etc/keepalived/backup.sh",)),
    ("FAULT", ("/etc/keepalived/fault.sh", "fault")),
    ("STOP", ("/etc/keepalived/stop.sh",)),
])
def test_each_state_runs_its_script(state: str, specific: tuple[str, ...]) -> None:
    assert argvs(state, 90) == [specific, ("/etc/keepalived/notify.sh", "INSTANCE", "VI_1",
                                           state, "90")]


@pytest.mark.parametrize(("notify_deleted", "state"), [(False, "FAULT"), (True, "DELETED")])
def test_an_instance_removed_by_a_reload_runs_only_the_generic_script(
        notify_deleted: bool, state: str) -> None:
    """keepalived 2.2.7, recorded: FAULT (DELETED with notify_deleted), no notify_fault /
    notify_stop."""
    assert deleted_state(notify_deleted) == state
    got = commands("INSTANCE", "VI_1", state, 150, scripts_of(CONF), deleted=True)
    assert [argv for _, argv in got] == [
        ("/etc/keepalived/notify.sh", "INSTANCE", "VI_1", state, "150")]


def test_only_what_is_configured_runs() -> None:
    only_generic = Scripts(generic=Script(("/bin/n", "x")))
    assert [a for _, a in commands("GROUP", "G", "BACKUP", 0, only_generic)] == [
        ("/bin/n", "x", "GROUP", "G", "BACKUP", "0")]
    only_master = Scripts(master=Script(("/bin/m",)))
    assert [a for _, a in commands("INSTANCE", "VI", "BACKUP", 100, only_master)] == []
    assert [a for _, a in commands("INSTANCE", "VI", "MASTER", 100, only_master)] == [
        ("/bin/m",)]


def test_the_script_object_is_handed_back_for_its_user() -> None:
    s = Script(("/bin/n",), user="nobody")
    [(script, _)] = commands("INSTANCE", "VI", "FAULT", 1, Scripts(generic=s))
    assert script is s


@pytest.mark.parametrize(("kind", "state"), [("HOST", "MASTER"), ("INSTANCE", "INIT")])
def test_unknown_kind_or_state_is_refused(kind: str, state: str) -> None:
    with pytest.raises(ValueError):
        commands(kind, "VI", state, 1, Scripts())
