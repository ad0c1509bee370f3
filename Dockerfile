# Build stage: compile the production broker (no `dev` feature: no simulator, no --dev) with the locked
# dependency set. The COPY set is what cargo needs to load the workspace, not only what the broker compiles:
# every member's manifest and every target a manifest declares must exist (the broker's [[bench]], kubesim's
# library, binary and [[bench]]), although kubesim itself is not compiled here. `.ci/dockerfile-context`
# checks that this set is sufficient.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY kubesim ./kubesim
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --no-default-features --bin kidp-broker

# Runtime stage: a small image with CA certificates, running as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kidp-broker /usr/local/bin/kidp-broker
USER 65532:65532
EXPOSE 8082 9090
ENTRYPOINT ["/usr/local/bin/kidp-broker"]
