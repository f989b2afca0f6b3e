# raftgate in an image built FROM scratch: no base image is pulled. The
# binary is linked statically on the host first (cluster/docker-build.sh,
# run by cluster/docker-up.sh), so `docker compose build` works offline.
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/raftgate /raftgate
COPY cluster/docker/ /etc/raftgate/
VOLUME ["/data"]
EXPOSE 8000 8443 8001 8100 8005
ENTRYPOINT ["/raftgate"]
CMD ["serve", "--config", "/etc/raftgate/node.toml"]
