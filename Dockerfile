# One image for every mqlab program (workers, producers); docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "raw_pika.worker"]
