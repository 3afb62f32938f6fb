"""Python hooks and entry-point modules of the built-in declared connectors (one module per
provider: ``Slack = declared(__file__, "slack.yaml")``)."""
