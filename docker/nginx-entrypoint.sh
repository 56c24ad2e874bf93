#!/bin/sh
# The official nginx image's contract, as docker-compose.yml uses it: every /etc/nginx/templates/*.template
# rendered into $NGINX_ENVSUBST_OUTPUT_DIR with the environment's variables (only LOGPX_* ones, so that
# nginx's own $variables stay as they are).
set -eu
out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
vars=$(env | sed -n 's/^\(LOGPX_[A-Z_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    name=$(basename "$template" .template)
    envsubst "$vars" < "$template" > "$out/$name"
done
exec "$@"
