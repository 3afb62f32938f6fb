"""Webhooks in and out: provider signature schemes, intake, routing of incoming events, and the
fleet's own events sent to subscribers."""
