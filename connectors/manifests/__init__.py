"""The built-in connector manifests (YAML data, loaded by :mod:`connectors.manifest`)."""
