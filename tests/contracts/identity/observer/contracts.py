"""A test module that declares no messages: it only listens to identity's events."""

from modules.identity.contracts import UserRegistered

SUBSCRIBES_TO = (UserRegistered,)
