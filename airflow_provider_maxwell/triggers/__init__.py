"""Triggers: MaxwellJobTrigger and the shared poller."""
