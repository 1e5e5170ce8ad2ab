"""A test module that declares no messages: it only listens to identity's events."""
