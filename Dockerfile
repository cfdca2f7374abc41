# One image for every process of the shop: web (gunicorn), workers, beat, Flower, the simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var \
    DJANGO_SETTINGS_MODULE=config.settings_production

WORKDIR /app

# The runtime lock only (requirements.lock, `make lock`): every package pinned with its hashes, so
# the same commit builds the same image. A layer that changes when the lock does, not the code.
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock

# A user without a login or a home to write to: the app owns only its var/ folder.
RUN groupadd --system shop && useradd --system --gid shop --no-create-home shop

COPY --chown=shop:shop . .

# Static files are collected at build time; whitenoise serves them compressed and cache-busted.
# collectstatic needs settings to import, not real secrets.
RUN mkdir -p /app/var && chown shop:shop /app/var \
    && SECRET_KEY=collectstatic-only-build-time-value-not-used-at-run-time-0123456789 \
       ALLOWED_HOSTS=build DATABASE_URL=postgresql://build@localhost/build \
       CELERY_BROKER_URL=amqp://build@localhost// EMAIL_HOST=build SITE_URL=https://build \
       PAYMENT_GATEWAY=devtools.payment_gateway.SimulatedGateway \
       python manage.py collectstatic --no-input \
    && chown -R shop:shop /app/var

USER shop
EXPOSE 8000 8001 5555
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000"]
