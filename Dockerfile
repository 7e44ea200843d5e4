# One image for every mqlab program (workers, producers): only the four clients are installed
# (the lab and test extras stay out); docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -c constraints.txt .   # core only: pika, celery, dramatiq, faststream
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "raw_pika.worker"]
