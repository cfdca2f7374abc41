"""Development and demo tooling, kept off the production code path: the failure lab's fault injection.

Nothing in the shop's apps imports this package to do its work. The failure lab's email faults act
through ``devtools.email_backends.FaultInjectingEmailBackend``, which settings put in front of the
real email backend only while ``FAILURE_LAB`` is on.
"""
