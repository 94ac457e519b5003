"""Behaviour through whole apps, one directory per deployment (docs/deployments/)."""
