# Build stage: compile the broker with the locked dependency set.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY kubesim ./kubesim
COPY src ./src
COPY openapi ./openapi
RUN cargo build --release --locked --bin kidp-broker

# Runtime stage: a small image with CA certificates, running as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kidp-broker /usr/local/bin/kidp-broker
USER 65532:65532
EXPOSE 8082 9090
ENTRYPOINT ["/usr/local/bin/kidp-broker"]
