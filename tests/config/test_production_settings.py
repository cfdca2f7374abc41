"""The production settings module: strict by default and clean under ``check --deploy``."""

import os
import subprocess
import sys

import pytest

from tests.processes import BIN, REPO, free_port
from tests.test_compose import procfile

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings_production",
    "SECRET_KEY": "x7-Qw3nV9zLk2pR8sT4uY6bN1mC5dF0gH3jK7lP9oI2uE8wA4zXcVbNmQwErTy",
    "ALLOWED_HOSTS": "shop.example.com",
    "DATABASE_URL": "postgresql://shop@db.example.com:5432/shop",
    "CELERY_BROKER_URL": "amqp://shop:secret@rabbitmq.example.com:5672//",
    "EMAIL_HOST": "smtp.example.com",
    "SITE_URL": "https://shop.example.com",
    "PAYMENT_GATEWAY": "devtools.payment_gateway.SimulatedGateway",
}


def manage(*args: str, env: dict[str, str], without: tuple[str, ...] = ()):
    environment = {
        **{k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV},
        **env,
    }
    for name in without:
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_reports_no_issue_under_production_settings(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "DEBUG",
        env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path)},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def production_value(expression: str, tmp_path) -> str:
    result = manage(
        "shell",
        "-c",
        f"from django.conf import settings; print({expression})",
        env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_production_turns_on_publisher_confirms_quorum_queues_and_child_recycling(tmp_path):
    assert production_value("settings.CELERY_BROKER_TRANSPORT_OPTIONS", tmp_path) == (
        "{'confirm_publish': True}"
    )
    assert (
        production_value(
            "sorted({q.name: q.queue_arguments['x-queue-type'] for q in settings.CELERY_TASK_QUEUES}.items())",
            tmp_path,
        )
        == "[('bulk', 'quorum'), ('critical', 'quorum'), ('default', 'quorum')]"
    )
    assert (
        production_value("[q.exchange.type for q in settings.CELERY_TASK_QUEUES]", tmp_path)
        == "['topic', 'topic', 'topic']"
    )
    assert int(production_value("settings.CELERY_WORKER_MAX_TASKS_PER_CHILD", tmp_path)) > 0
    assert int(production_value("settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD", tmp_path)) > 0


def test_production_serves_static_files_with_whitenoise_and_secure_cookies(tmp_path):
    middleware = production_value("settings.MIDDLEWARE[:2]", tmp_path)
    assert middleware == (
        "['django.middleware.security.SecurityMiddleware', "
        "'whitenoise.middleware.WhiteNoiseMiddleware']"
    )
    assert (
        production_value(
            "(settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)",
            tmp_path,
        )
        == "(False, True, True)"
    )


REQUIRED = (
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "EMAIL_HOST",
    "SITE_URL",
    "PAYMENT_GATEWAY",
)


@pytest.mark.parametrize("name", REQUIRED)
def test_production_refuses_to_start_without_each_required_variable(tmp_path, name):
    result = manage("check", env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path)}, without=(name,))

    assert result.returncode != 0
    assert f"{name} must be set in the environment for production" in result.stderr


def test_production_names_every_missing_variable_in_one_sentence(tmp_path):
    result = manage(
        "check",
        env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path)},
        without=("EMAIL_HOST", "SITE_URL"),
    )
    assert result.returncode != 0
    assert (
        "EMAIL_HOST, SITE_URL must be set in the environment for production (see .env.example)."
        in result.stderr.splitlines()[-1]
    )


def test_production_refuses_to_start_without_a_payment_gateway_named(tmp_path):
    """The development default, the payment simulator, is never production's by omission: its
    public test card would place real orders."""
    result = manage(
        "check", env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path)}, without=("PAYMENT_GATEWAY",)
    )

    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].endswith(
        "PAYMENT_GATEWAY must be set in the environment for production (see .env.example)."
    )


@pytest.mark.parametrize("value", ["  ", "SimulatedGateway", "payments.nowhere.Gateway"])
def test_production_refuses_a_payment_gateway_that_is_not_a_class_path(tmp_path, value):
    result = manage(
        "check", env={**PRODUCTION_ENV, "VAR_DIR": str(tmp_path), "PAYMENT_GATEWAY": value}
    )

    assert result.returncode != 0
    assert "PAYMENT_GATEWAY must be" in result.stderr.splitlines()[-1]


def test_a_demo_names_the_simulator_explicitly(tmp_path):
    assert env_example()["PAYMENT_GATEWAY"] == "devtools.payment_gateway.SimulatedGateway"
    assert (
        production_value("settings.PAYMENT_GATEWAY", tmp_path)
        == "devtools.payment_gateway.SimulatedGateway"
    )


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_check_deploy_is_clean_at_warning_level_with_the_values_in_env_example(tmp_path):
    example = env_example()
    assert example["SECRET_KEY"] == "change-me"  # the one value every deployment must replace
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**example, "SECRET_KEY": PRODUCTION_ENV["SECRET_KEY"], "VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_example_secret_key_is_refused(tmp_path):
    result = manage("check", env={**env_example(), "VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY must be a random value" in result.stderr


def test_production_refuses_the_development_secret_key(tmp_path):
    result = manage(
        "check",
        env={
            **PRODUCTION_ENV,
            "VAR_DIR": str(tmp_path),
            "SECRET_KEY": "dev-only-insecure-key-set-SECRET_KEY-in-production",
        },
    )

    assert result.returncode != 0
    assert "SECRET_KEY must be a random value" in result.stderr


@pytest.mark.parametrize(
    "process", ["release", "web", "worker-critical", "worker-default", "beat", "relay", "flower"]
)
def test_every_production_process_refuses_to_start_without_email_host(tmp_path, process):
    """Each line of Procfile.production (what compose runs), started as it is: without EMAIL_HOST
    it stops at once with the sentence, instead of keeping mail in a database outbox nobody reads."""
    environment = {
        **{k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV},
        **PRODUCTION_ENV,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "VAR_DIR": str(tmp_path),
        "WEB_BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "1",
        "FLOWER_ADDRESS": "127.0.0.1",
        "FLOWER_PORT": str(free_port()),
        "CELERY_FLOWER_USER": "ops",
        "CELERY_FLOWER_PASSWORD": "a-real-password-for-flower",
    }
    environment.pop("EMAIL_HOST", None)

    result = subprocess.run(
        ["sh", "-c", f"exec {procfile()[process]}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "EMAIL_HOST must be set in the environment for production" in (
        result.stdout + result.stderr
    )
