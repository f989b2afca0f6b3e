#!/usr/bin/env bash
# `docker compose` (v2 plugin) when present, else `docker-compose` (v1).
if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
else
  exec docker-compose "$@"
fi
