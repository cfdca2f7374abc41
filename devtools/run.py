"""`make run`: the Procfile under honcho, with Flower's credentials and the addresses to open.

    python -m devtools.run                  # every line of the Procfile
    python -m devtools.run web worker-critical

Flower always asks for a password: ``CELERY_FLOWER_PASSWORD`` if set, else the one kept in
``var/flower-password`` (made on the first run). The addresses are printed now and again by the
Procfile's ``ready`` line once everything answers (``devtools.run_ready``), below the start-up logs.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def flower_credentials(environ: dict[str, str], *, var_dir: Path) -> tuple[str, str]:
    from devtools.flower_password import flower_password_get

    user = environ.get("CELERY_FLOWER_USER") or "admin"
    password = environ.get("CELERY_FLOWER_PASSWORD") or flower_password_get(
        path=var_dir / "flower-password"
    )
    return user, password


def addresses(environ: dict[str, str]) -> dict[str, str]:
    """Where the Procfile's servers listen (the same variables the Procfile reads)."""
    web = environ.get("WEB_ADDRESS") or "127.0.0.1:8000"
    flower_host = environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    if flower_host in ("0.0.0.0", "::"):  # noqa: S104 - bound to all: open it on this machine
        flower_host = "127.0.0.1"
    return {
        "web": f"http://{web}",
        "flower": f"http://{flower_host}:{environ.get('FLOWER_PORT') or '5555'}",
    }


def urls_block(environ: dict[str, str], *, heading: str) -> str:
    urls = addresses(environ)
    user = environ.get("CELERY_FLOWER_USER", "admin")
    password = environ.get("CELERY_FLOWER_PASSWORD", "(not set)")
    return "\n".join(
        [
            "",
            f"  {heading}",
            f"  Storefront  {urls['web']}/",
            f"  Admin       {urls['web']}/admin/  (create a login: "
            ".venv/bin/python manage.py createsuperuser)",
            f"  Ops         {urls['web']}/ops/",
            f"  Dev outbox  {urls['web']}/dev/outbox/",
            f"  Flower      {urls['flower']}/  user {user}, password {password}",
            "",
        ]
    )


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings  # the one place that knows where var/ is

    user, password = flower_credentials(os.environ, var_dir=Path(settings.VAR_DIR))
    os.environ["CELERY_FLOWER_USER"], os.environ["CELERY_FLOWER_PASSWORD"] = user, password
    print(urls_block(os.environ, heading="Starting the shop:"), flush=True)
    bin_dir = Path(sys.executable).parent  # the Procfile's `python` and `celery` are this venv's
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    honcho = str(bin_dir / "honcho")
    os.chdir(REPO)
    os.execv(honcho, [honcho, "start", "--procfile", "Procfile", *argv[1:]])  # noqa: S606


if __name__ == "__main__":
    main(sys.argv)
