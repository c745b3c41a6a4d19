# One image for the operator and the runner: `milvusdm operator ...` / `milvusdm run ...`.
# Build:  docker build -t ghcr.io/milvusdm/milvusdm:0.1.0 .

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/milvusdm
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY operator ./operator
RUN /opt/milvusdm/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --gid 10001 milvusdm && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin milvusdm
COPY --from=build /opt/milvusdm /opt/milvusdm
ENV PATH=/opt/milvusdm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    MILVUSDM_STATE_DIR=/tmp/milvusdm
# The root filesystem can be read-only: everything written goes to /tmp (mount an emptyDir there).
VOLUME ["/tmp"]
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["milvusdm"]
CMD ["--help"]
