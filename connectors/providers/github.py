"""The GitHub connector's entry point: declared in ``connectors/manifests/github.yaml``, with
one Python hook for GitHub App installations (:mod:`connectors.providers.github_app`)."""

from __future__ import annotations

from spark_integrations.connectors.manifest import declared

__all__ = ["GitHub"]

GitHub = declared(__file__, "github.yaml")
