# keepmover's container image, for `keepmover plan -k8s` (and anyone who runs containers).
# Build from the repository root:   docker build -t keepmover:0.1.0 .
# Two stages: the lean binary (no simulator: --no-default-features) built on the Rust
# toolchain the workspace declares (rust-version in Cargo.toml), then only that binary on a
# minimal glibc base with CA certificates (TLS to the clusters is verified), as a non-root
# user. Settings files and tokens are never baked in: they are mounted at run time.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --no-default-features --locked \
 && install -D -m 0755 target/release/keepmover /out/keepmover

# distroless/cc: glibc, libgcc, CA certificates, a nonroot user (65532); no shell.
FROM gcr.io/distroless/cc-debian12 AS runtime
COPY --from=builder /out/keepmover /usr/local/bin/keepmover
# Numeric, so Kubernetes can check runAsNonRoot (the plan's pods run as 65532 too).
USER 65532:65532
ENTRYPOINT ["keepmover"]
