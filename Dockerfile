# driftwatch: multi-stage build. librdkafka is built from source by the
# rdkafka crate, so the build stage needs a C toolchain, cmake and perl.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake build-essential perl python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY config ./config
COPY schemas ./schemas
RUN cargo build --release --locked --bin driftwatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 driftwatch
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
COPY config/driftwatch.toml /etc/driftwatch/driftwatch.toml
COPY schemas /usr/share/driftwatch/schemas
USER driftwatch
# The admin port (/metrics, /healthz, /readyz); bind it beyond loopback
# inside the container with DRIFTWATCH_ADMIN__LISTEN=0.0.0.0:9464.
EXPOSE 9464
ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "/etc/driftwatch/driftwatch.toml"]
