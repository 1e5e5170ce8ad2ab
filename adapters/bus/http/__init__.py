"""The HTTP transport: module services call each other over internal, signed endpoints."""
