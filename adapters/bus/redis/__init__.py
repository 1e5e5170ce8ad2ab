"""The queue transport: modules reached through a broker (Redis, or RabbitMQ) with dramatiq.

One queue per module. Commands and queries (``cleave.request``), events and deferred commands
(``cleave.deliver``) are dramatiq messages carrying the wire frame; dramatiq's workers,
middleware, retries and dead-letter queues do the rest. Answers come back through a Redis
list per calling process, read with one blocking ``BLPOP``: see docs/adr/0013.

``client``: the calling side (``QueueClient``, ``QueueTransport``). ``worker``: the receiving
side (actors and middleware around a process's ``Receiver``). ``broker``: the dramatiq brokers,
with a Redis consumer that blocks instead of polling. ``dead_letters``: what the broker
dead-lettered, for ``cleave dead-letters``.
"""
