# syntax=docker/dockerfile:1
# Two stages: wheels are built (compilers, headers) in the first; the runtime stage installs only those
# wheels and has no compiler, no headers, no pip cache and no test or lint tool. `make image-size` prints
# the size of the result (README "Container image").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheels
# gcc and libpq's headers/pg_config build psycopg's C implementation (requirements/psycopg-c.in).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# The image's lock: the runtime lock (requirements.txt) with psycopg[c] in place of psycopg[binary].
COPY requirements/image.txt .
# Every downloaded file is checked against the lock's hashes here; the runtime stage installs these wheels
# offline and does not download anything.
RUN pip wheel --no-cache-dir --disable-pip-version-check --require-hashes --wheel-dir /wheels -r image.txt


FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_ENV=production LOG_FORMAT=json VAR_DIR=/app/var
# libpq5: the client library psycopg's C implementation links against (the library only, no headers).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/*
# The wheels are mounted for this step only, so they are not a layer of the image.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl

WORKDIR /app
COPY . .
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /app/var \
    && SECRET_KEY=build-only-collectstatic python manage.py collectstatic --noinput -v0 \
    && chown -R app:app /app/var
USER app

EXPOSE 8000
# The web process's liveness (/health: no database or broker round trip), asked as the proxy in front would
# (scripts/healthcheck.py). Compose gives the other services (workers, beat, sandbox, Flower) their own
# checks or none.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["python", "scripts/healthcheck.py"]
CMD ["gunicorn", "reconcile_project.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-", "--control-socket", "/tmp/gunicorn.ctl"]
