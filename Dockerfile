# One image for every unmark process: the web receiver, the workers and `unmark serve`.
#   docker build -t unmark .        docker compose up        (see README, "Scaling out")
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenCV's wheel (which the engine's text detector requires) links libGL and GLib even without a screen.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
# The engine's trained network ships inside the package (bot/engine/models), the text detector inside
# rapidocr's wheel: nothing is downloaded at run time.
RUN pip install '.[postgres]' && rm -rf /src

# Not root: a compromised process owns only /data (the SQLite file, `unmark serve`'s uploads and results).
RUN useradd --create-home --uid 10001 unmark && mkdir /data && chown unmark /data
USER unmark
WORKDIR /data

EXPOSE 8080
ENTRYPOINT ["unmark"]
CMD ["run", "--webhook"]
