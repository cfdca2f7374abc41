"""Reads of the failure lab's faults."""

from devtools.models import EmailFaults, WarehouseFaults


def email_faults_get() -> EmailFaults:
    """The email faults in force; an unsaved all-off row when the lab never set any."""
    return EmailFaults.objects.first() or EmailFaults(pk=1)


def warehouse_faults_get() -> WarehouseFaults:
    return WarehouseFaults.objects.first() or WarehouseFaults(pk=1)
