"""What runs the implementations for the tests, the lab and ``mqlab broker``: RabbitMQ nodes
(local, Docker, external), the management API client, processes and the reaper, and the registry
of implementations. Imports :mod:`shared` and the implementations' interface, nothing else."""
