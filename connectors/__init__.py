"""Southbound protocol adapters. edgeflow finds them through the ``edgeflow.connectors`` entry points."""
