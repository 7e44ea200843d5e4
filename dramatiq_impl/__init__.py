"""The tutorial system built with Dramatiq over RabbitMQ (``RabbitmqBroker``)."""
