# PostgreSQL for the scale-out stack where postgres:16-alpine cannot be pulled: Debian's postgresql-15 on the
# local Debian base, with the official image's environment contract (docker/postgres-entrypoint.sh).
ARG BASE_IMAGE=localhost/logpx-base:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
# Debian's package makes the postgres user (its UID is the package's choice); the server refuses to run as root.
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
