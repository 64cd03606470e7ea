"""Northbound transports: where shipped events go."""
