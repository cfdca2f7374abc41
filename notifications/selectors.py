"""Reads of email delivery state for pages."""

from notifications.models import EmailFaults


def email_faults_get() -> EmailFaults:
    """The email faults in force; an unsaved all-off row when the lab never set any."""
    return EmailFaults.objects.first() or EmailFaults(pk=1)
