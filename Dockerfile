# One image for every mqlab program (workers, producers); docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY raw_pika ./raw_pika
COPY celery_impl ./celery_impl
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "raw_pika.worker"]
