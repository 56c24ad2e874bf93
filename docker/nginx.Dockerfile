# nginx for the compose stacks where nginx:1.27-alpine cannot be pulled: Debian's nginx-light on the local
# Debian base (docker/base-image.sh), with the official image's template contract (docker/nginx-entrypoint.sh).
ARG BASE_IMAGE=localhost/logpx-base:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light gettext-base \
    && rm -rf /var/lib/apt/lists/*
COPY docker/nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/nginx-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
