"""The failure lab's forms: every number is bounded, so a typo cannot wedge the shop."""

from django import forms

# An email's latency reaches past ORDER_DELAYED_AFTER_SECONDS (30 s), so a slow provider shows
# customers "Delayed", and stays under the tasks' soft time limit (CELERY_TASK_SOFT_TIME_LIMIT,
# 60 s), so a slow send is slow, not killed.
EMAIL_LATENCY_MAX_MS = 50_000
# The warehouse is called with a WAREHOUSE_TIMEOUT_SECONDS (5 s) timeout: past it, a slow
# warehouse is a timeout, retried like an error (customers see "Delayed" at once).
WAREHOUSE_LATENCY_MAX_MS = 30_000


class EmailFaultsForm(forms.Form):
    latency_ms = forms.IntegerField(
        min_value=0, max_value=EMAIL_LATENCY_MAX_MS, label="Latency (ms)"
    )
    error_rate = forms.FloatField(min_value=0, max_value=1, label="Error rate (0–1)")


class WarehouseFaultsForm(forms.Form):
    latency_ms = forms.IntegerField(
        min_value=0, max_value=WAREHOUSE_LATENCY_MAX_MS, label="Latency (ms)"
    )
    failure_rate = forms.FloatField(min_value=0, max_value=1, label="Error rate (0–1)")
    outage = forms.BooleanField(required=False, label="Outage (503 for every request)")
