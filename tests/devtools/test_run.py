"""make run's launcher: Flower's password is made once and kept, the environment's wins."""

import stat

from devtools.run import flower_credentials, urls_block


def test_the_first_run_makes_a_password_and_keeps_it_readable_by_its_owner_only(tmp_path):
    user, password = flower_credentials({}, var_dir=tmp_path)

    kept = tmp_path / "flower-password"
    assert user == "admin" and len(password) >= 16
    assert kept.read_text().strip() == password
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_the_next_run_uses_the_kept_password(tmp_path):
    _, first = flower_credentials({}, var_dir=tmp_path)
    _, second = flower_credentials({}, var_dir=tmp_path)

    assert second == first


def test_the_environments_password_wins_and_nothing_is_written(tmp_path):
    environ = {"CELERY_FLOWER_USER": "ops", "CELERY_FLOWER_PASSWORD": "from-the-env"}

    assert flower_credentials(environ, var_dir=tmp_path) == ("ops", "from-the-env")
    assert not (tmp_path / "flower-password").exists()


def test_an_empty_password_file_gets_a_password(tmp_path):
    (tmp_path / "flower-password").write_text("")
    _, password = flower_credentials({}, var_dir=tmp_path)
    assert password and (tmp_path / "flower-password").read_text().strip() == password


def test_the_addresses_follow_the_procfiles_variables():
    block = urls_block(
        {
            "WEB_ADDRESS": "127.0.0.1:8100",
            "FLOWER_PORT": "5600",
            "CELERY_FLOWER_USER": "admin",
            "CELERY_FLOWER_PASSWORD": "pw",
        },
        heading="Everything is up:",
    )
    assert "Storefront  http://127.0.0.1:8100/" in block
    assert "Ops         http://127.0.0.1:8100/ops/" in block
    assert "Flower      http://127.0.0.1:5600/  user admin, password pw" in block
