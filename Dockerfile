# The referral worker (and, with `referrals serve`, the partner web service). Built by
# docker-compose.yml; scale it with --scale worker=N.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY workflows ./workflows
COPY activities ./activities
COPY archive ./archive
COPY starter ./starter
COPY web ./web
COPY worker.py ./
# Bytecode for the sources the worker runs from, since this image writes none at run time:
# a faster start, without compiling them in the running worker.
RUN pip install . \
 && python -m compileall -q workflows activities archive starter web worker.py \
 && useradd --create-home --uid 10001 referrals \
 && mkdir -p /data/outbox \
 && chown -R referrals /data
COPY samples ./samples

USER referrals
ENV REFERRALS_OUTBOX_DIR=/data/outbox \
    REFERRALS_DATABASE_URL=sqlite:////data/referrals.db \
    REFERRALS_PARTNER_DIRECTORY=/app/samples/partners.json
# SIGTERM stops polling and lets in-flight activities finish.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "worker"]
