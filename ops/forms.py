"""The failure lab's forms: every number is bounded, so a typo cannot wedge the shop."""

from django import forms


class EmailFaultsForm(forms.Form):
    latency_ms = forms.IntegerField(min_value=0, max_value=30_000, label="Latency (ms)")
    error_rate = forms.FloatField(min_value=0, max_value=1, label="Error rate (0–1)")


class WarehouseFaultsForm(forms.Form):
    latency_ms = forms.IntegerField(min_value=0, max_value=30_000, label="Latency (ms)")
    failure_rate = forms.FloatField(min_value=0, max_value=1, label="Error rate (0–1)")
    outage = forms.BooleanField(required=False, label="Outage (503 for every request)")
