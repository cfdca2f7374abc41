"""The warehouse client is built once per process and reused (building one costs tens of ms)."""

from orders import warehouse


def test_the_warehouse_client_is_reused_within_a_process():
    assert warehouse._http() is warehouse._http()


def test_a_forked_child_builds_its_own_warehouse_client(monkeypatch):
    parent_client = warehouse._http()
    monkeypatch.setattr(warehouse, "_client_pid", -1)  # as seen from a child after fork()

    child_client = warehouse._http()

    assert child_client is not parent_client
    assert warehouse._http() is child_client
